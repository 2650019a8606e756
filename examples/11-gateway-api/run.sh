#!/usr/bin/env bash
# The Gateway API: examples/09-ingress's webserver as a Gateway and an HTTPRoute on weft ingress. Install the
# Gateway API (deploy/gateway.yaml: the CRDs) and the controller (it makes GatewayClass weft), make a Gateway (it
# gets a LoadBalancer address, in status.addresses), route by Host to v1 and v2 by weight (90/10) with a header match
# that always takes v2 (a canary). curl runs on the lab's external host.
source "$(dirname "$0")/../lib.sh"
here="$(dirname "$0")"
lab_up --nodes 2
ext() { weft lab exec external -- "$@"; }
code() { ext curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "$@"; }
# Which version's pod answered a request (the echo server's JSON names its pod).
version() { ext curl -sS --max-time 5 "$@" | grep -o '"pod":"web-v[12]' | cut -d- -f2; }

step "install the Gateway API and weft ingress; GatewayClass weft is Accepted"
# deploy/gateway.yaml: the CRDs and permissions; weft ingress makes the GatewayClass weft when it starts.
kubectl apply -f "$root/deploy/gateway.yaml"
kubectl apply -f "$root/deploy/ingress.yaml"
kubectl rollout status deployment/weft-ingress -n weft-ingress --timeout=60s
until_true '[ "$(kubectl get gatewayclass weft -o jsonpath={.status.conditions[?\(@.type==\"Accepted\"\)].status})" = True ]'
kubectl get gatewayclasses

step "two versions of the app"
kubectl apply -f "$here/backends.yaml"
kubectl rollout status deployment/web-v1 --timeout=60s
kubectl rollout status deployment/web-v2 --timeout=60s

step "a Gateway: Programmed, with the address of the LoadBalancer Service weft ingress made for it"
kubectl apply -f "$here/gateway.yaml"
until_true '[ "$(kubectl get gateway web -o jsonpath={.status.conditions[?\(@.type==\"Programmed\"\)].status})" = True ]'
kubectl get gateways
kubectl get services -n weft-ingress
address=$(kubectl get gateway web -o jsonpath='{.status.addresses[0].value}')

step "nothing is routed yet: 404"
until_true '[ "$(code "http://$address/")" = 404 ]'

step "the HTTPRoute: Accepted; its host answers, another host gets 404"
kubectl apply -f "$here/routes.yaml"
until_true '[ "$(kubectl get httproute web -o jsonpath={.status.parents[0].conditions[?\(@.type==\"Accepted\"\)].status})" = True ]'
until_true '[ "$(code -H "Host: hwsw-k8s.leannet.eu" "http://$address/")" = 200 ]'
[ "$(code -H "Host: other.example" "http://$address/")" = 404 ]

step "the canary header always takes v2"
for _ in 1 2 3 4 5; do [ "$(version -H "Host: hwsw-k8s.leannet.eu" -H "X-Canary: always" "http://$address/")" = v2 ]; done

step "without it, about 90% go to v1"
v1=0
for _ in $(seq 100); do [ "$(version -H "Host: hwsw-k8s.leannet.eu" "http://$address/")" = v1 ] && v1=$((v1 + 1)); done
echo "v1 took $v1 of 100"
[ "$v1" -ge 75 ] && [ "$v1" -le 99 ]

step "deleting the Gateway removes its Service"
kubectl delete -f "$here/gateway.yaml"
until_true '[ -z "$(kubectl get services -n weft-ingress -l gateway.weft.dev/name=web -o name)" ]'
