#!/usr/bin/env bash
# Seeing the packets: the notes' tshark exercise (a cross-node HTTP request captured on the wire shows two IP
# headers over VXLAN, one over plain routes), then the flows the agents keep (`weft observe`): a connection
# through a ClusterIP with its Service and backend, and a connection a NetworkPolicy drops, naming the policy.
source "$(dirname "$0")/../lib.sh"
here="$(dirname "$0")"
tmp=$(mktemp -d)
cleanups+=("rm -rf '$tmp'")

# Captures 10 packets of FILTER on the wire into FILE while the client fetches from web (node-2 → node-1).
capture() {
  local file="$1"; shift
  weft lab capture wire -w "$file" -c 10 "$@" &
  local cap=$! i
  until [ -s "$file" ]; do sleep 0.1; done
  for i in $(seq 50); do
    kill -0 "$cap" 2>/dev/null || break
    weft exec client -- wget -qO- --timeout=1 --tries=1 "http://$web/" >/dev/null || true
  done
  wait "$cap"
}
# The IP addresses (comma-separated, outer first) of the first HTTP request in FILE.
request_ips() { tshark -r "$1" -Y http.request -T fields -e ip.src 2>/dev/null | head -1; }

lab_up --nodes 2 --overlay vxlan -f "$here/app.yaml"
kubectl wait --for=condition=Ready pod --all --timeout=60s >/dev/null
kubectl get pods -o wide
web=$(kubectl get pod web -o jsonpath='{.status.podIP}')

step "encapsulated (overlay vxlan): the wire carries UDP 4789, which tshark decodes as VXLAN without -d"
weft lab exec node-1 -- ip -d link show weft.1 | grep -o 'vxlan id 1 .*dstport 4789'
capture "$tmp/vxlan.pcap" udp port 4789
tshark -r "$tmp/vxlan.pcap" -V -Y http.request 2>/dev/null \
  | grep -E '^(Ethernet II|Internet Protocol|User Datagram|Virtual eXtensible|Transmission Control|Hypertext)'
ips=$(request_ips "$tmp/vxlan.pcap")
echo "IP sources of the request: $ips (node-2's address outside, the client pod's inside)"
[ "$(echo "$ips" | tr ',' '\n' | wc -l)" = 2 ]

step "the flows the agents saw: the client reaching web directly and through the Service's ClusterIP"
svc=$(kubectl get service web -o jsonpath='{.spec.clusterIP}')
weft exec client -- wget -qO- --timeout=2 --tries=1 "http://$svc/" >/dev/null
until_true "weft observe --service web --verdict TRANSLATED -o json | grep -q '\"name\":\"web\"'"
weft observe --pod client --port 80

step "a policy admits only access=true: the stranger's connection is DROPPED, naming the policy"
kubectl apply -f "$here/policy.yaml"
until_true "! weft exec stranger -- wget -qO- --timeout=1 --tries=1 http://$web/"
until_true "weft observe --verdict DROPPED --pod stranger | grep -q 'by default/web-access'"
weft observe --verdict DROPPED --pod stranger --last 3

step "plain (overlay host-gw): the same request on the wire has one IP header, the pods' own"
weft lab down >/dev/null
lab_up --nodes 2 --overlay host-gw -f "$here/app.yaml"
kubectl wait --for=condition=Ready pod --all --timeout=60s >/dev/null
web=$(kubectl get pod web -o jsonpath='{.status.podIP}')
capture "$tmp/plain.pcap" tcp port 80
tshark -r "$tmp/plain.pcap" -V -Y http.request 2>/dev/null \
  | grep -E '^(Ethernet II|Internet Protocol|Transmission Control|Hypertext)'
ips=$(request_ips "$tmp/plain.pcap")
echo "IP source of the request: $ips (the client pod, routed as it is)"
[ "$(echo "$ips" | tr ',' '\n' | wc -l)" = 1 ]
echo "ok: observe"
