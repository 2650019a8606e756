#!/usr/bin/env bash
# Installs the system packages weft and its tests use (Debian). Idempotent; run as root.
set -euo pipefail
pkgs=(nftables iproute2 iputils-ping conntrack procps socat dnsutils curl wget dnsperf)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
