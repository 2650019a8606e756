#!/usr/bin/env bash
# A Linux bridge as the virtual switch between namespaces, and the node reaching them through it.
source "$(dirname "$0")/../lib.sh"
lab_up --nodes 1
red="weft-$WEFT_LAB-red" blue="weft-$WEFT_LAB-blue"  # the lab prefix: `lab down` removes them too

step "a bridge on node-1 and two namespaces plugged into it"
on node-1 "ip link add v-net-0 type bridge && ip link set v-net-0 up"
for ns in red blue; do
  n="weft-$WEFT_LAB-$ns"; addr=$([ $ns = red ] && echo 192.168.15.1 || echo 192.168.15.2)
  on node-1 "ip netns add $n && ip link add veth-$ns type veth peer name veth-$ns-br \
    && ip link set veth-$ns netns $n && ip link set veth-$ns-br master v-net-0 && ip link set veth-$ns-br up \
    && ip -n $n addr add $addr/24 dev veth-$ns && ip -n $n link set veth-$ns up"
done
on node-1 "ip address show type bridge"

step "red pings blue through the bridge"
on node-1 "ip netns exec $red ping -c1 -W2 192.168.15.2"

step "the node reaches the namespaces once the bridge has an address"
on node-1 "ip addr add 192.168.15.5/24 dev v-net-0 && ping -c1 -W2 192.168.15.2"
echo "ok: bridge"
