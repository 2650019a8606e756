#!/usr/bin/env bash
# NetworkPolicy, as in the notes: nginx reachable from every pod until a policy admits only pods labelled
# access=true; the allowed busybox still gets the page, the other one times out. weft trace says why, and the
# node's nftables show the rules. With kubectl; the fetches run in the pods with `weft exec` until the lab's API
# serves pods/exec, then they are the notes' `kubectl exec -it busybox-allowed -- wget -qO- --timeout=5 nginx`.
source "$(dirname "$0")/../lib.sh"
here="$(dirname "$0")"
lab_up --nodes 2 -f "$here/test.yaml"
kubectl rollout status deployment/nginx --timeout=60s
kubectl get pods -o wide
# The notes' busybox wget gives up after one timeout; pods here run the host's GNU wget, which would retry 20 times.
fetch() { weft exec "$1" -- wget -qO- --timeout=2 --tries=1 nginx; }  # waits on pods/exec

step "no policy yet: both clients reach nginx (by its Service name, through cluster DNS)"
until_ok fetch busybox-allowed
fetch busybox-unallowed

step "weft policy check reads the policy before it is applied"
weft policy check -f "$here/ingress-policy.yaml"

step "the policy: only pods labelled access=true may reach the nginx pods"
kubectl apply -f "$here/ingress-policy.yaml"
kubectl get networkpolicy
until_true '! fetch busybox-unallowed'
echo "busybox-unallowed: timed out, as it should"
fetch busybox-allowed

step "weft trace explains both decisions (the Service address is rewritten to each nginx pod first)"
svc=$(kubectl get service nginx -o jsonpath='{.spec.clusterIP}')
weft trace busybox-allowed "$svc:80"
! weft trace busybox-unallowed "$svc:80"

step "what the node agent programmed: the policy table of a node's nftables"
weft lab exec node-1 -- nft list table inet weft-policy | head -40

step "labelling the other client gives it access; deleting the policy opens nginx to all"
kubectl label pod busybox-unallowed access=true --overwrite
kubectl get pods --show-labels
until_ok fetch busybox-unallowed
kubectl delete networkpolicy access-nginx
fetch busybox-unallowed
echo "ok: network policy"
