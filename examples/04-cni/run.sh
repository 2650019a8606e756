#!/usr/bin/env bash
# What the CNI plugin did for a pod: its namespace, its eth0 and IP, the node's end of the veth and route,
# and the same plugin called by hand, exactly as a runtime calls it.
source "$(dirname "$0")/../lib.sh"
lab_up --nodes 1 -f "$root/examples/quickstart/client.yaml"

step "the pod's IP as the API reports it"
ip=$(weft get pod client -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["podIP"])')
uid=$(weft get pod client -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["metadata"]["uid"])')
echo "podIP $ip"

step "the pod's network namespace (the runtime's sandbox) has eth0 with that address"
netns=$(ip netns list | awk '{print $1}' | grep "^weft-$WEFT_LAB-pod-${uid:0:12}$")
ip netns exec "$netns" ip -br addr | tee /dev/stderr | grep -q "$ip/"
weft exec client -- ip route

step "on the node: the host end of the veth and a /32 route to the pod"
on node-1 "ip route get $ip" | tee /dev/stderr | grep -q veth

step "the node's CNI config (in the node's own /etc/cni/net.d), and weft-cni called by hand (VERSION), as kubelet's runtime would"
node_root="/run/weft/labs/$WEFT_LAB/nodes/node-1/root"
cat "$node_root/etc/cni/net.d/10-weft.conflist"
echo '{"cniVersion":"1.1.0"}' | CNI_COMMAND=VERSION "$node_root/opt/cni/bin/weft" | grep -q '"1.1.0"'

step "STATUS: the node's network is ready"
# The runtime runs plugins with the node's own /run; by hand, its nodeConfig (/run/weft/node.json) is under the node's root.
python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); p=c["plugins"][0]; p["name"]=c["name"]; p["cniVersion"]=c["cniVersion"]; p["nodeConfig"]=sys.argv[2]+p["nodeConfig"]; print(json.dumps(p))' \
  "$node_root/etc/cni/net.d/10-weft.conflist" "$node_root" \
  | weft lab exec node-1 -- env CNI_COMMAND=STATUS CNI_PATH="$node_root/opt/cni/bin" "$node_root/opt/cni/bin/weft"
echo "ok: CNI"
