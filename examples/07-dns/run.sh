#!/usr/bin/env bash
# Cluster DNS: how a pod resolves names (/etc/hosts, /etc/resolv.conf, the kube-dns Service), Service names in
# their short and full forms, SRV and PTR records, a headless Service's per-pod answers, as in the notes'
# "inside the pods the DNS is also available" and the Linux DNS basics, with kubectl. Commands in the client pod use
# `weft exec` until the lab's API serves pods/exec; then `in_client` becomes the notes'
# `kubectl exec -it $(kubectl get pods -o name | head -1) -- ...` (kubectl exec -n test client -- ...).
source "$(dirname "$0")/../lib.sh"
here="$(dirname "$0")"
lab_up --nodes 2 -f "$here/dns.yaml"
in_client() { weft exec -n test client -- "$@"; }  # waits on pods/exec
kubectl rollout status deployment/webserver -n test --timeout=60s

step "the cluster's DNS is a Service in kube-system (kube-dns, 10.96.0.10) in front of weft dns pods"
kubectl get services -n kube-system
kubectl get pods -n kube-system -o wide
[ "$(kubectl get service kube-dns -n kube-system -o jsonpath='{.spec.clusterIP}')" = 10.96.0.10 ]

step "a pod's resolver: /etc/hosts first (nsswitch 'files dns'), then the nameserver and search path of resolv.conf"
in_client cat /etc/resolv.conf
in_client grep -qx 'nameserver 10.96.0.10' /etc/resolv.conf
in_client grep -qx 'search test.svc.cluster.local svc.cluster.local cluster.local' /etc/resolv.conf
in_client cat /etc/hosts
in_client getent hosts client | grep -q "$(kubectl get pod client -n test -o jsonpath='{.status.podIP}')"

step "nslookup by the Service's short name and by its full name: both answer the ClusterIP"
ip=$(kubectl get service webserver-service -n test -o jsonpath='{.spec.clusterIP}')
in_client nslookup webserver-service
in_client nslookup webserver-service | grep -q "Address: $ip"
in_client nslookup webserver-service.test.svc.cluster.local | grep -q "Address: $ip"
in_client getent hosts webserver-service.test | grep -q "^$ip"

step "dig: the A record, the SRV record of the named port, the PTR of the ClusterIP, the version TXT"
[ "$(in_client dig +short webserver-service.test.svc.cluster.local)" = "$ip" ]
in_client dig +short SRV _http._tcp.webserver-service.test.svc.cluster.local | grep -q ' 80 webserver-service.test.svc.cluster.local.$'
in_client dig +short -x "$ip" | grep -qx 'webserver-service.test.svc.cluster.local.'
in_client dig +short TXT dns-version.cluster.local

step "a headless Service answers with every ready pod's address"
in_client dig +short webserver-headless.test.svc.cluster.local
answer=$(in_client dig +short webserver-headless.test.svc.cluster.local | sort)
web=$(for p in $(kubectl get pods -n test -o name | grep webserver); do
  kubectl get -n test "$p" -o jsonpath='{.status.podIP}'; echo; done | sort)
[ "$answer" = "$web" ]

step "an ExternalName Service is a CNAME; a headless Service with a static endpoint names that endpoint"
kubectl apply -f "$here/external.yaml"
until_ok in_client getent hosts externalname-service
in_client dig externalname-service.test.svc.cluster.local | grep -A3 'ANSWER SECTION'
in_client dig +short externalname-service.test.svc.cluster.local | grep -qx 'webserver-service.test.svc.cluster.local.'
in_client weft probe http://externalname-service/hostname
until_ok in_client getent hosts external-ip
[ "$(in_client dig +short external-ip.test.svc.cluster.local)" = 172.18.0.100 ]
in_client ping -c1 -W2 external-ip
! in_client ping -c1 -W1 webserver-service  # a ClusterIP only forwards the Service's ports

step "a name that does not exist is NXDOMAIN; calling the Service by name works like by address"
in_client dig nosuch-service.test.svc.cluster.local | grep -q 'status: NXDOMAIN'
in_client weft probe http://webserver-service/hostname
echo "ok: dns"
