#!/usr/bin/env bash
# Encapsulation modes, live: the default IP pool's vxlanMode changed with `kubectl apply`, and `ip route` on a
# node before and after. node-1 and node-2 share a subnet; node-3 is on another, behind a router.
source "$(dirname "$0")/../lib.sh"
here="$(cd "$(dirname "$0")" && pwd)"
# Whether node-2 has a route matching $1 (grep reads all of `ip route`: with -q, pipefail would see SIGPIPE).
node2_routes() { on node-2 ip route | grep -E "$1" >/dev/null; }
routable() { kubectl get ippool default-ipv4-ippool -o jsonpath="{.status.conditions[?(@.type==\"Routable\")].$1}"; }

step "a 3-node lab on two subnets (--subnets 2), VXLAN: the default pool is vxlanMode Always"
lab_up --nodes 3 --subnets 2 --overlay vxlan
kubectl get ippools -o yaml
[ "$(kubectl get ippool default-ipv4-ippool -o jsonpath='{.spec.vxlanMode}')" = Always ]

step "Always: node-2 reaches node-1's and node-3's pods through weft.1"
until_true "node2_routes '10.244.3.0/24 via 10.244.3.0 dev weft.1'"
on node-2 ip route
node2_routes '10.244.1.0/24 via 10.244.1.0 dev weft.1 .*onlink'

step "CrossSubnet: directly to node-1 on the same subnet, still VXLAN to node-3 across the router"
kubectl apply -f "$here/ippool-crosssubnet.yaml"
until_true "node2_routes '10.244.1.0/24 via 172.18.0.11 dev eth0'"
on node-2 ip route
node2_routes '10.244.3.0/24 via 10.244.3.0 dev weft.1'

step "Never: node-3 cannot be reached directly, and the pool and node-3 say so"
kubectl apply -f "$here/ippool-never.yaml"
until_true '[ "$(routable reason)" = NodesOnDifferentSubnets ]'
on node-2 ip route
if node2_routes '10.244.3.0/24'; then echo 'node-2 still routes node-3 pods' >&2; exit 1; fi
kubectl get ippools
routable message; echo
kubectl get events -n default -o jsonpath='{range .items[?(@.reason=="PodsUnreachable")]}{.involvedObject.name}: {.message}{"\n"}{end}'

step "Always again: every route back on weft.1, the pool Routable"
kubectl apply -f "$here/ippool-always.yaml"
until_true "node2_routes '10.244.1.0/24 via 10.244.1.0 dev weft.1'"
until_true '[ "$(routable status)" = True ]'
on node-2 ip route
echo "ok: IP pool modes, live"
