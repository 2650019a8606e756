#!/bin/sh
# System calls per request of the proxy that a running `weft bench ingress` loads: waits for the bench's first
# keep-alive wrk run (not its 2 s warm-up), then counts with perf, over WINDOW seconds from 1 s into the run, each
# system call of the proxy (its whole process tree), of the backend and of wrk, and divides them by the responses
# the backend wrote meanwhile (its one writev per response). perf's tracepoints cost some CPU per system call:
# the bench's own figures of that run are disturbed, the counts are not. Run it beside a bench of one proxy:
#
#   scripts/ingress-syscalls.sh [WINDOW=3] > weft.txt &
#   target/release/weft bench ingress --only weft --rounds 1 --seconds 8 --handshake-seconds 1 --idle 10
set -eu
window=${1:-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
wrk=""
deadline=$(( $(date +%s) + 600 ))
while [ -z "$wrk" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "no wrk run seen" >&2; exit 1; }
    for p in $(pgrep -x wrk || true); do
        case "$(tr '\0' ' ' < /proc/$p/cmdline)" in *"-d 2s"*) ;; *) wrk=$p ;; esac
    done
    [ -n "$wrk" ] || sleep 0.1
done
url=$(tr '\0' ' ' < /proc/$wrk/cmdline | grep -o 'http://[^ ]*')
port=$(echo "$url" | sed 's|http://[^:]*:\([0-9]*\)/.*|\1|')
# The proxy: the processes listening on the port, and their parents' other children (nginx's master, workers).
proxy=$(ss -ltnpH "sport = :$port" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u | tr '\n' ',' | sed 's/,$//')
backend=$(pgrep -f "bench ingress --backend" | head -1)
sleep 1
for who in proxy backend wrk; do
    eval "pids=\$$who"
    perf stat -x, -e 'raw_syscalls:sys_enter' -e 'syscalls:sys_enter_*' -p "$pids" -- sleep "$window" 2> "$tmp/$who" &
done
wait
responses=$(awk -F, '$3 == "syscalls:sys_enter_writev" { print $1 }' "$tmp/backend")
echo "wrk $wrk -> $url; proxy pids $proxy, backend $backend; $responses responses in ${window} s (the backend's writevs)"
for who in proxy backend wrk; do
    echo "--- $who: system calls per request"
    awk -F, -v n="$responses" '$1 ~ /^[0-9]+$/ && $1 > 0 { printf "%8.3f %s\n", $1 / n, $3 }' "$tmp/$who" | sort -rn
done
