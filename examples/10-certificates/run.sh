#!/usr/bin/env bash
# Certificates: the notes' last step, cert-manager with Let's Encrypt, with weft certs in cert-manager's place and
# the lab's pebble (`weft lab up --acme`) as Let's Encrypt. With kubectl: install weft ingress (its Service a
# LoadBalancer: the address the lab's DNS gives every name) and weft certs, the blue and green deployments, the ACME
# issuer, an Ingress annotated with it; the CertificateRequest, Order and Certificate as cert-manager shows them; then
# `curl https://blue.weft.test` on the external host without -k, its chain verified up to pebble's root. Also an
# ACME server that does not answer.
source "$(dirname "$0")/../lib.sh"
here="$(dirname "$0")"
lab_up --nodes 2 --acme
ext() { weft lab exec external -- "$@"; }
# Polls a shell condition until it holds, for up to $1 seconds (issuance takes a few).
within() { local i; for i in $(seq $(($1 * 10))); do eval "$2" >/dev/null 2>&1 && return 0; sleep 0.1; done; eval "$2"; }

step "weft ingress, its Service a LoadBalancer: 172.18.1.1, where the lab's DNS sends every name"
kubectl apply -f "$root/deploy/ingress.yaml" >/dev/null
kubectl patch -n weft-ingress service weft-ingress -p '{"spec":{"type":"LoadBalancer"}}'
kubectl rollout status deployment/weft-ingress -n weft-ingress --timeout=60s
within 10 '[ "$(kubectl get service weft-ingress -n weft-ingress -o jsonpath={.status.loadBalancer.ingress[0].ip})" = 172.18.1.1 ]'
ext getent hosts blue.weft.test | grep '^172.18.1.1 '

step "weft certs: cert-manager's API"
kubectl apply -f "$root/deploy/certs.yaml" >/dev/null
kubectl rollout status deployment/weft-certs -n weft-certs --timeout=60s

step "blue and green"
kubectl apply -f "$here/blue-green.yaml"
kubectl rollout status deployment/blue --timeout=60s
kubectl rollout status deployment/green --timeout=60s

step "the ACME issuer: pebble's directory, trusted through caBundle; Ready once its account is registered"
ca="$(base64 -w0 "/run/weft/labs/$WEFT_LAB/acme/ca.pem")"
sed "s|CA_BUNDLE|$ca|" "$here/acme-issuer.yaml" | kubectl apply -f -
within 20 '[ "$(kubectl get issuer letsencrypt -o jsonpath={.status.conditions[0].reason})" = ACMEAccountRegistered ]'
kubectl get issuers
kubectl get secret letsencrypt-account -o jsonpath='{.data.tls\.key}' | base64 -d | grep -q 'BEGIN PRIVATE KEY'

step "the Ingress annotated cert-manager.io/issuer: a Certificate, a CertificateRequest, an Order, HTTP-01 through weft ingress"
kubectl apply -f "$here/ingress-blue-green.yaml"
within 60 '[ "$(kubectl get certificate blue-green-tls -o jsonpath={.status.conditions[0].status})" = True ]'
kubectl get certificaterequests
kubectl get orders
kubectl get certificates
[ "$(kubectl get orders -o jsonpath='{.items[0].status.state}')" = valid ]
# The solver's Pod, Service and Ingress are gone once the order is valid, as are its Challenges.
within 10 '[ -z "$(kubectl get ingress,service,pods -l acme.cert-manager.io/http01-solver=true -o name)" ]'
within 10 '[ -z "$(kubectl get challenges -o name)" ]'

step "curl https://blue.weft.test/ on the external host: no -k, the chain verified up to pebble's root"
within 10 'ext curl -sS --max-time 5 https://blue.weft.test/ | grep -q "pod: blue-"'
ext curl -sS https://blue.weft.test/
ext curl -sS https://green.weft.test/ | grep 'pod: green-'
ext curl -sS -o /dev/null -w '%{ssl_verify_result}\n' https://green.weft.test/ | grep -x 0
kubectl get secret blue-green-tls -o jsonpath='{.data.tls\.crt}' | base64 -d \
  | openssl x509 -noout -issuer -ext subjectAltName | tee /dev/stderr | grep -q 'DNS:blue.weft.test, DNS:green.weft.test'

step "an ACME server that does not answer: Ready=False, ErrRegisterACMEAccount"
kubectl apply -f "$here/unreachable-issuer.yaml"
within 20 '[ "$(kubectl get issuer unreachable -o jsonpath={.status.conditions[0].reason})" = ErrRegisterACMEAccount ]'
kubectl get issuer unreachable -o jsonpath='{.status.conditions[0].message}{"\n"}' | grep -i 'connect\|refused'
echo "ok: certificates"
