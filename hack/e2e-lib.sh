# Shared by hack/e2e.sh, bench.sh, up.sh, down.sh and clean-nodes.sh (sourced, not run).
# Real nodes need the machine to themselves: one run at a time, as root.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
export SELFKUBE_CACHE=${SELFKUBE_CACHE:-/var/cache/selfkube-test}
export KUBE_VERSION=${KUBE_VERSION:-v1.36.3}
export SELFKUBE_E2E_DIR=${SELFKUBE_E2E_DIR:-/var/lib/selfkube-e2e}
export SELFKUBE_ARTIFACTS=${SELFKUBE_ARTIFACTS:-$REPO_ROOT/_output/artifacts}
export CGO_ENABLED=0
GO=${GO:-go}
NODES_BIN=$REPO_ROOT/_output/bin/nodes

die() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

require_root() {
  [[ $(id -u) -eq 0 ]] || die "real nodes need root (namespaces, cgroups, mounts): run it with sudo"
}

# lock_nodes takes the machine-wide lock of real-node runs, or fails if another run holds it.
lock_nodes() {
  mkdir -p "$SELFKUBE_E2E_DIR"
  exec 9>"$SELFKUBE_E2E_DIR/.lock"
  flock -n 9 || die "another real-node run (e2e, bench, up) is active on this machine: wait for it"
}

# build_nodes builds the node harness CLI into _output/bin/nodes.
build_nodes() {
  mkdir -p "$(dirname "$NODES_BIN")"
  "$GO" build -o "$NODES_BIN" ./test/e2e/cmd/nodes || die "building the nodes CLI failed"
}
