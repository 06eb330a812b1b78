#!/usr/bin/env bash
# The benchmark table (markdown), measured in this run on real nodes: kubeadm's column now,
# selfkube's beside it once its variant exists (test/e2e/bench_test.go).
# SELFKUBE_BENCH_REBOOTS=N measures each reboot N times (default 3).
source "$(dirname "$0")/e2e-lib.sh"
require_root
lock_nodes
if [[ -d $SELFKUBE_E2E_DIR/nodes ]] && [[ -n $(ls -A "$SELFKUBE_E2E_DIR/nodes") ]]; then
  die "nodes exist already (make up?): run \`make down\` first"
fi
export SELFKUBE_BENCH=1
export SELFKUBE_BENCH_OUT=${SELFKUBE_BENCH_OUT:-$REPO_ROOT/_output/bench.md}
rm -f "$SELFKUBE_BENCH_OUT"
"$GO" test -tags e2e -count=1 -v -timeout 110m -run '^TestBench$' ./test/e2e/ "$@" >&2 9>&-
echo
echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores, Kubernetes $KUBE_VERSION:"
echo
cat "$SELFKUBE_BENCH_OUT"
