#!/usr/bin/env bash
# The CNI demo: what a container runtime does for two pods on one node, with weft-cni doing the work.
# A "node" network namespace stands in for the machine, so nothing on this host changes.
# Run as root after `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="$PWD/target/release/weft-cni"
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }

tag="weftdemo$$"
node="$tag-node"
state="$(mktemp -d)"
cleanup() {
  for ns in "$node" "$tag-a" "$tag-b"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$state"
}
trap cleanup EXIT

# The plugin types are chosen by program name, as runtimes call them from /opt/cni/bin.
mkdir -p "$state/bin"
for t in bridge host-local portmap loopback; do ln -s "$bin" "$state/bin/$t"; done

ip netns add "$node"; ip netns add "$tag-a"; ip netns add "$tag-b"
ip -n "$node" link set lo up

# flannel's cbr0 chain, unchanged but for the state directories.
conf() {
  cat <<JSON
{"cniVersion":"1.0.0","name":"cbr0","type":"bridge","bridge":"cni0","isDefaultGateway":true,"hairpinMode":true,
 "ipMasq":true,"stateDir":"$state/weft","ipam":{"type":"host-local","subnet":"10.244.0.0/24","dataDir":"$state/ipam"}}
JSON
}
add() { # pod-netns container-id
  conf | ip netns exec "$node" env CNI_COMMAND=ADD CNI_CONTAINERID="$2" CNI_NETNS="/run/netns/$1" CNI_IFNAME=eth0 \
    CNI_PATH="$state/bin" "$state/bin/bridge"
}

echo "== ADD pod a"; add "$tag-a" pod-a | tee "$state/a.json"; echo
echo "== ADD pod b"; add "$tag-b" pod-b | tee "$state/b.json"; echo
ip_b=$(sed -E 's/.*"address":"([0-9.]+)\/.*/\1/' "$state/b.json")
echo "== inside pod a"; ip -n "$tag-a" -br addr; ip -n "$tag-a" route
echo "== on the node"; ip -n "$node" -br link show master cni0
echo "== pod a pings pod b ($ip_b)"
ip netns exec "$tag-a" ping -c 3 -W 2 "$ip_b"
echo "== the node's nftables (masquerade for pod traffic leaving 10.244.0.0/24)"
ip netns exec "$node" nft list table inet weft-cni
echo "demo done; everything it made is removed on exit"
