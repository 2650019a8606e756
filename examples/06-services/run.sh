#!/usr/bin/env bash
# Services: a Deployment's pods behind a ClusterIP (balanced), NodePort, LoadBalancer, headless and a
# selector-less Service with a static endpoint, as in the notes' "Using Services in Kubernetes", with kubectl.
# Steps that run a command in a pod use `weft exec` until the lab's API serves pods/exec; each names the notes'
# `kubectl exec` line it stands for.
source "$(dirname "$0")/../lib.sh"
here="$(dirname "$0")"
lab_up --nodes 3 -f "$root/examples/quickstart/client.yaml"

step "a webserver Deployment with 3 replicas; deleting a pod brings a new one with a new IP"
kubectl apply -f "$here/webserver.yaml"
kubectl rollout status deployment/webserver --timeout=60s
kubectl get pods -o wide
kubectl delete $(kubectl get pods -o name -l app=webserver | head -1)
until_true '[ "$(kubectl get deployment webserver -o jsonpath={.status.readyReplicas})" = 3 ]'
kubectl get pods -o wide

step "the Service: one ClusterIP for the three pods; calls are balanced over them"
kubectl get service
ip=$(kubectl get service webserver-service -o jsonpath='{.spec.clusterIP}')
# waits on pods/exec: kubectl exec client -- weft probe "http://$ip/hostname"
seen=$(for i in $(seq 30); do weft exec client -- weft probe "http://$ip/hostname"; done | sort -u | tee /dev/stderr | wc -l)
[ "$seen" = 3 ]
kubectl get endpointslices -l kubernetes.io/service-name=webserver-service

step "what kube-proxy's iptables-save showed, here: the node's nftables rules for the Service"
weft lab exec node-1 -- nft list table inet weft | grep -F "$ip"

step "NodePort: every node answers on port 30080, localhost too"
kubectl get nodes -o wide
weft lab exec node-1 -- weft probe http://localhost:$(kubectl get service nodeport-service -o jsonpath="{.spec.ports[0].nodePort}")/hostname
weft lab exec external -- weft probe "http://$(kubectl get nodes -o jsonpath="{.items[1].status.addresses[0].address}"):$(kubectl get service nodeport-service -o jsonpath="{.spec.ports[0].nodePort}")/hostname"

step "LoadBalancer: the lab's cloud gives it an address the external host can reach"
kubectl get services
kubectl describe service loadbalancer-service
lb=$(kubectl get service loadbalancer-service -o jsonpath='{.status.loadBalancer.ingress[0].ip}')
weft lab exec external -- weft probe "http://$lb/hostname"

step "kubectl patch turns the NodePort Service into a LoadBalancer; it gets an address too"
kubectl patch svc nodeport-service -p '{"spec":{"type":"LoadBalancer"}}'
until_true '[ -n "$(kubectl get service nodeport-service -o jsonpath={.status.loadBalancer.ingress[0].ip})" ]'
kubectl describe svc nodeport-service
weft lab exec external -- weft probe "http://$(kubectl get service nodeport-service -o jsonpath='{.status.loadBalancer.ingress[0].ip}')/hostname"

step "headless: no ClusterIP, the endpoints are the pods (their DNS answers: examples/07-dns)"
kubectl get service headless-service
[ "$(kubectl get service headless-service -o jsonpath='{.spec.clusterIP}')" = None ]
kubectl get endpoints

step "kubectl expose makes a Service from the Deployment's selector and ports"
kubectl expose deployment/webserver --port 80 --name webserver-exposed
until_true '[ "$(kubectl get endpointslices -l kubernetes.io/service-name=webserver-exposed -o jsonpath={.items[0].endpoints[*].addresses[0]} | wc -w)" = 3 ]'
kubectl get endpointslices -l kubernetes.io/service-name=webserver-exposed

step "a Service without selector, pointed at the external host by a static endpoint"
weft lab exec external -- weft serve --http 8080 >/dev/null 2>&1 &
until_ok weft lab exec external -- weft probe tcp://127.0.0.1:8080
kubectl apply -f "$here/external-ip.yaml"
kubectl get services
kubectl get endpoints external-ip
ext=$(kubectl get service external-ip -o jsonpath='{.spec.clusterIP}')
# waits on pods/exec: kubectl exec -it $(kubectl get pods -o name | head -1) -- ... (the notes ping external-ip)
until_ok weft exec client -- weft probe "http://$ext/"
weft exec client -- weft probe "http://$ext/" | grep -q 'client: 172.18.0.1[1-3]:'
echo "ok: services"
