#!/usr/bin/env bash
# Pod-to-pod traffic across nodes without NAT: host-gw routes, then a VXLAN overlay.
source "$(dirname "$0")/../lib.sh"
for overlay in host-gw vxlan; do
  step "a 3-node lab over $overlay with the quickstart"
  weft lab up --nodes 3 --overlay "$overlay" -f "$root/examples/quickstart/" >/dev/null
  cleanups+=("weft lab down")
  weft get pods -o wide
  step "each node routes the other nodes' pod CIDRs"
  weft lab exec node-1 -- ip route
  [ "$overlay" = vxlan ] && weft lab exec node-1 -- ip -d link show weft.1 | grep -q 'vxlan id 1'
  client_ip=$(weft get pod client -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["podIP"])')
  for ip in $(weft get pods -o json | python3 -c 'import json,sys; [print(p["status"]["podIP"]) for p in json.load(sys.stdin)["items"] if p["metadata"]["name"].startswith("web-")]'); do
    step "client -> $ip: the server sees the client's own address ($client_ip)"
    weft exec client -- weft probe "http://$ip/" | tee /dev/stderr | grep -q "client: $client_ip:"
  done
  weft lab down >/dev/null
done
echo "ok: cross-node pod traffic"
