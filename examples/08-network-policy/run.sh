#!/usr/bin/env bash
# NetworkPolicy, as in the notes: nginx reachable from every pod until a policy admits only pods labelled
# access=true; the allowed busybox still gets the page, the other one times out. weft trace says why, and the
# node's nftables show the rules.
source "$(dirname "$0")/../lib.sh"
here="$(dirname "$0")"
lab_up --nodes 2 -f "$here/test.yaml"
until_true '[ "$(weft get deployment nginx -o jsonpath={.status.readyReplicas})" = 2 ]'
weft get pods -o wide
# The notes' busybox wget gives up after one timeout; pods here run the host's GNU wget, which would retry 20 times.
fetch() { weft exec "$1" -- wget -qO- --timeout=2 --tries=1 nginx; }

step "no policy yet: both clients reach nginx (by its Service name, through cluster DNS)"
until_ok fetch busybox-allowed
fetch busybox-unallowed

step "weft policy check reads the policy before it is applied"
weft policy check -f "$here/ingress-policy.yaml"

step "the policy: only pods labelled access=true may reach the nginx pods"
weft apply -f "$here/ingress-policy.yaml"
weft get networkpolicy
until_true '! fetch busybox-unallowed'
echo "busybox-unallowed: timed out, as it should"
fetch busybox-allowed

step "weft trace explains both decisions (the Service address is rewritten to each nginx pod first)"
svc=$(weft get service nginx -o jsonpath='{.spec.clusterIP}')
weft trace busybox-allowed "$svc:80"
! weft trace busybox-unallowed "$svc:80"

step "what the node agent programmed: the policy table of a node's nftables"
weft lab exec node-1 -- nft list table inet weft-policy | head -40

step "labelling the other client gives it access; deleting the policy opens nginx to all"
cat <<YAML | weft apply -f -
apiVersion: v1
kind: Pod
metadata:
  name: busybox-unallowed
  labels:
    access: "true"
spec:
  containers:
  - name: busybox
    image: busybox:1.36
    command: ["sleep", "infinity"]
YAML
until_ok fetch busybox-unallowed
weft delete networkpolicy access-nginx
fetch busybox-unallowed
echo "ok: network policy"
