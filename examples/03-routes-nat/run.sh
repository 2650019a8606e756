#!/usr/bin/env bash
# Routes out of a namespace, masquerade (SNAT) to reach another host, and port forwarding (DNAT) into it.
# The notes use iptables; nftables rules do the same (iptables-nft would write these very rules).
source "$(dirname "$0")/../lib.sh"
lab_up --nodes 1
blue="weft-$WEFT_LAB-blue"  # the lab prefix: `lab down` removes it too

step "blue behind a bridge on node-1 (192.168.15.0/24), the bridge is its gateway"
on node-1 "ip link add v-net-0 type bridge && ip addr add 192.168.15.5/24 dev v-net-0 && ip link set v-net-0 up \
  && ip netns add $blue && ip link add veth-blue type veth peer name veth-blue-br \
  && ip link set veth-blue netns $blue && ip link set veth-blue-br master v-net-0 && ip link set veth-blue-br up \
  && ip -n $blue addr add 192.168.15.2/24 dev veth-blue && ip -n $blue link set veth-blue up && ip -n $blue link set lo up \
  && ip netns exec $blue ip route add default via 192.168.15.5 && ip netns exec $blue ip route"

step "a server on the external host (172.18.0.100), outside the cluster"
weft lab exec external -- weft serve --http 18080 >/dev/null 2>&1 &
until_ok weft lab exec external -- weft probe tcp://127.0.0.1:18080

step "without NAT the external host cannot answer blue (it has no route to 192.168.15.0/24)"
on node-1 "sysctl -qw net.ipv4.ip_forward=1"
if on node-1 "ip netns exec $blue weft probe --timeout 1s http://172.18.0.100:18080/"; then
  echo "unexpected: blue reached the external host without NAT" >&2; exit 1
fi

step "masquerade blue's traffic to node-1's address: the external host now answers, seeing 172.18.0.11"
on node-1 "nft add table ip lab-nat && nft 'add chain ip lab-nat post { type nat hook postrouting priority 100; }' \
  && nft add rule ip lab-nat post ip saddr 192.168.15.0/24 oif eth0 masquerade"
on node-1 "ip netns exec $blue weft probe http://172.18.0.100:18080/" | tee /dev/stderr | grep -q 'client: 172.18.0.11:'

step "port forwarding: node-1:8080 to blue:18081, reached from the external host"
on node-1 "ip netns exec $blue weft serve --http 18081 >/dev/null 2>&1 &"
until_ok on node-1 "ip netns exec $blue weft probe tcp://127.0.0.1:18081"
on node-1 "nft 'add chain ip lab-nat pre { type nat hook prerouting priority -100; }' \
  && nft add rule ip lab-nat pre tcp dport 8080 dnat to 192.168.15.2:18081 && nft list table ip lab-nat"
weft lab exec external -- weft probe http://172.18.0.11:8080/ | grep -q 'client: 172.18.0.100:'
echo "ok: routes, masquerade and port forwarding"
