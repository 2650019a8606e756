#!/usr/bin/env bash
# Two network namespaces joined by a veth pair ("a virtual cable"), made by hand on a lab node.
source "$(dirname "$0")/../lib.sh"
lab_up --nodes 1
red="weft-$WEFT_LAB-red" blue="weft-$WEFT_LAB-blue"  # the lab prefix: `lab down` removes them too

step "create two namespaces; each has only lo, and no routes"
on node-1 "ip netns add $red && ip netns add $blue"
on node-1 "ip netns exec $red ip link; ip netns exec $blue ip route"

step "a veth pair: one end in each namespace, addressed and up"
on node-1 "ip link add veth-red type veth peer name veth-blue \
  && ip link set veth-red netns $red && ip link set veth-blue netns $blue \
  && ip -n $red addr add 192.168.15.1/24 dev veth-red && ip -n $blue addr add 192.168.15.2/24 dev veth-blue \
  && ip -n $red link set veth-red up && ip -n $blue link set veth-blue up"

step "red pings blue"
on node-1 "ip netns exec $red ping -c1 -W2 192.168.15.2"

step "deleting one end deletes the pair"
on node-1 "ip -n $red link del veth-red && ! ip -n $blue link show veth-blue 2>/dev/null"
echo "ok: namespaces and veth"
