# Shared by the example scripts: a lab of their own (or $WEFT_LAB), the weft binary, kubectl with a kubeconfig of
# their own, and cleanup on exit.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WEFT="${WEFT:-$root/target/release/weft}"
[ -x "$WEFT" ] || { echo "build first: cargo build --release (or set WEFT)" >&2; exit 1; }
export WEFT_LAB="${WEFT_LAB:-example$$}"
export PATH="$(dirname "$WEFT"):$PATH"
cleanups=()
on_exit() {
  local i
  for ((i = ${#cleanups[@]} - 1; i >= 0; i--)); do eval "${cleanups[$i]}" >/dev/null 2>&1 || true; done
}
trap on_exit EXIT
command -v kubectl >/dev/null || { echo "kubectl not found (scripts/deps.sh installs one)" >&2; exit 1; }
# `weft lab up` merges the lab's context into this file and makes it current, so kubectl talks to this lab.
export KUBECONFIG="${TMPDIR:-/tmp}/weft-$WEFT_LAB.kubeconfig"
cleanups+=("rm -f '$KUBECONFIG'")
# Runs a shell command line on a lab node: weft lab exec NODE -- sh -c "..."
on() { local node="$1"; shift; weft lab exec "$node" -- sh -c "$*"; }
step() { printf '\n== %s\n' "$*"; }
# Polls a command until it succeeds (10 s).
until_ok() { local i; for i in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; "$@"; }
lab_up() { weft lab up "$@" >/dev/null; cleanups+=("weft lab down"); }
# Polls a shell condition (evaluated afresh each time) until it holds (10 s).
until_true() { local i; for i in $(seq 100); do eval "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; eval "$1"; }
