#!/usr/bin/env bash
# Ingress: the notes' "Using an ingress" with weft's controller in place of ingress-nginx, with kubectl: install it,
# reach it on its NodePort, an Ingress without a class (404), with ingressClassName nginx (the webserver), routed by
# Host header, HTTPS with the controller's self-signed certificate (curl -k) and with your own TLS Secret
# (curl --resolve --cacert), plain HTTP redirected to HTTPS, the Service patched to a LoadBalancer. curl runs on the lab's external host, where the notes
# say `curl <VM IP>:<node port>`.
source "$(dirname "$0")/../lib.sh"
here="$(dirname "$0")"
lab_up --nodes 2
ext() { weft lab exec external -- "$@"; }
code() { ext curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "$@"; }

step "install the ingress controller: weft ingress, 2 pods behind a NodePort Service (http and https)"
kubectl apply -f "$root/deploy/ingress.yaml"
kubectl rollout status deployment/weft-ingress -n weft-ingress --timeout=60s
kubectl get pods -n weft-ingress
kubectl get services -n weft-ingress
kubectl get ingressclasses
http=$(kubectl get service weft-ingress -n weft-ingress -o jsonpath='{.spec.ports[?(@.name=="http")].nodePort}')
https=$(kubectl get service weft-ingress -n weft-ingress -o jsonpath='{.spec.ports[?(@.name=="https")].nodePort}')
node=$(kubectl get nodes -o jsonpath="{.items[1].status.addresses[0].address}")

step "the controller runs: its default backend answers 404 (and /healthz 200)"
[ "$(code "http://$node:$http/")" = 404 ]
[ "$(code "http://$node:$http/healthz")" = 200 ]

step "an Ingress without a class: no controller takes it, still 404"
kubectl apply -f "$here/webserver.yaml"
kubectl rollout status deployment/webserver --timeout=60s
kubectl apply -f "$here/ingress-webserver.yaml"
kubectl get ingress
[ "$(code "http://$node:$http/")" = 404 ]

step "with ingressClassName: nginx the webserver answers"
kubectl apply -f "$here/ingress-with-class.yaml"
kubectl get ingress
until_true '[ "$(code "http://$node:$http/")" = 200 ]'
ext curl -sS "http://$node:$http/" | grep 'pod: webserver-'
# kubectl get ingress shows an ADDRESS: the nodes' (each answers on the node ports) while the Service is a NodePort.
until_true '[ -n "$(kubectl get ingress webserver-ingress -o jsonpath={.status.loadBalancer.ingress[0].ip})" ]'
kubectl get ingress
kubectl delete -f "$here/ingress-with-class.yaml"

step "routed by host name: a plain curl gets 404, with the Host header the webserver answers"
kubectl apply -f "$here/ingress-with-hostname.yaml"
kubectl get ingress
until_true '[ "$(code "http://$node:$http/")" = 404 ]'
until_true '[ "$(code -H "Host: hwsw-k8s.leannet.eu" "http://$node:$http/")" = 200 ]'

step "HTTPS with the controller's self-signed certificate: curl refuses it, unless -k"
! ext curl -sS --max-time 5 -H 'Host: hwsw-k8s.leannet.eu' "https://$node:$https/"
[ "$(code -k -H 'Host: hwsw-k8s.leannet.eu' "https://$node:$https/")" = 200 ]

step "your own certificate: a kubernetes.io/tls Secret named in the Ingress's tls, chosen by SNI"
tls="$(mktemp -d)"; cleanups+=("rm -rf '$tls'")
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=hwsw-k8s.leannet.eu \
  -addext subjectAltName=DNS:hwsw-k8s.leannet.eu -keyout "$tls/tls.key" -out "$tls/tls.crt" 2>/dev/null
kubectl create secret tls my-tls --cert="$tls/tls.crt" --key="$tls/tls.key"
kubectl apply -f "$here/ingress-with-tls.yaml"
until_true '[ "$(code --resolve "hwsw-k8s.leannet.eu:$https:$node" --cacert "$tls/tls.crt" "https://hwsw-k8s.leannet.eu:$https/")" = 200 ]'
ext curl -sS --resolve "hwsw-k8s.leannet.eu:$https:$node" --cacert "$tls/tls.crt" "https://hwsw-k8s.leannet.eu:$https/"

step "an Ingress with tls redirects plain HTTP to HTTPS (308)"
[ "$(ext curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' -H 'Host: hwsw-k8s.leannet.eu' "http://$node:$http/")" = "308 https://hwsw-k8s.leannet.eu/" ]
step "kubectl patch makes the controller's Service a LoadBalancer: its address answers on 80 and 443"
kubectl patch -n weft-ingress service weft-ingress -p '{"spec":{"type":"LoadBalancer"}}'
until_true '[ -n "$(kubectl get service weft-ingress -n weft-ingress -o jsonpath={.status.loadBalancer.ingress[0].ip})" ]'
kubectl get services -n weft-ingress
lb=$(kubectl get service weft-ingress -n weft-ingress -o jsonpath='{.status.loadBalancer.ingress[0].ip}')
until_true '[ "$(kubectl get ingress webserver-ingress -o jsonpath={.status.loadBalancer.ingress[0].ip})" = "$lb" ]'
kubectl get ingress
until_true '[ "$(code --resolve "hwsw-k8s.leannet.eu:443:$lb" --cacert "$tls/tls.crt" https://hwsw-k8s.leannet.eu/)" = 200 ]'
echo "ok: ingress"
