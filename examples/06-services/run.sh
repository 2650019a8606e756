#!/usr/bin/env bash
# Services: a Deployment's pods behind a ClusterIP (balanced), NodePort, LoadBalancer, headless and a
# selector-less Service with a static endpoint, as in the notes' "Using Services in Kubernetes".
source "$(dirname "$0")/../lib.sh"
here="$(dirname "$0")"
lab_up --nodes 3 -f "$root/examples/quickstart/client.yaml"

step "a webserver Deployment with 3 replicas; deleting a pod brings a new one with a new IP"
weft apply -f "$here/webserver.yaml"
until_true '[ "$(weft get deployment webserver -o jsonpath={.status.readyReplicas})" = 3 ]'
weft get pods -o wide
first=$(weft get pods -o name | grep webserver | head -1)
weft delete "${first%%/*}" "${first#*/}"
until_true '[ "$(weft get deployment webserver -o jsonpath={.status.readyReplicas})" = 3 ]'
weft get pods -o wide

step "the Service: one ClusterIP for the three pods; calls are balanced over them"
weft get service
ip=$(weft get service webserver-service -o jsonpath='{.spec.clusterIP}')
seen=$(for i in $(seq 30); do weft exec client -- weft probe "http://$ip/hostname"; done | sort -u | tee /dev/stderr | wc -l)
[ "$seen" = 3 ]
weft get endpointslices

step "what kube-proxy's iptables-save showed, here: the node's nftables rules for the Service"
weft lab exec node-1 -- nft list table inet weft | grep -F "$ip"

step "NodePort: every node answers on port 30080, localhost too"
weft get nodes -o wide
weft lab exec node-1 -- weft probe http://localhost:30080/hostname
node2=$(weft get nodes -o jsonpath='{.items[1].status.addresses[0].address}')
weft lab exec external -- weft probe "http://$node2:$(weft get service nodeport-service -o jsonpath='{.spec.ports[0].nodePort}')/hostname"

step "LoadBalancer: the lab's cloud gives it an address the external host can reach"
lb=$(weft get service loadbalancer-service -o jsonpath='{.status.loadBalancer.ingress[0].ip}')
weft get service loadbalancer-service
weft lab exec external -- weft probe "http://$lb/hostname"

step "headless: no ClusterIP, the endpoints are the pods (their DNS answers: examples/07-dns)"
weft get service headless-service
[ "$(weft get service headless-service -o jsonpath='{.spec.clusterIP}')" = None ]

step "a Service without selector, pointed at the external host by a static endpoint"
weft lab exec external -- weft serve --http 8080 >/dev/null 2>&1 &
until_ok weft lab exec external -- weft probe tcp://127.0.0.1:8080
weft apply -f "$here/external-ip.yaml"
weft get endpoints external-ip
ext=$(weft get service external-ip -o jsonpath='{.spec.clusterIP}')
until_ok weft exec client -- weft probe "http://$ext/"
weft exec client -- weft probe "http://$ext/" | grep -q 'client: 172.18.0.1[1-3]:'
echo "ok: services"
