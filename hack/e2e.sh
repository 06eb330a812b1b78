#!/usr/bin/env bash
# The real-node e2e suite: clusters on simulated machines of this host (test/e2e, build tag
# e2e). Needs root and `make host-setup images` (the Makefile target does both first).
# Extra arguments go to `go test`, e.g. hack/e2e.sh -run TestKubeadm.
# Node logs of failed tests (of every test with SELFKUBE_E2E_KEEP_LOGS=1) land in
# _output/artifacts/<test>/<node>/.
source "$(dirname "$0")/e2e-lib.sh"
require_root
lock_nodes
if [[ -d $SELFKUBE_E2E_DIR/nodes ]] && [[ -n $(ls -A "$SELFKUBE_E2E_DIR/nodes") ]]; then
  die "nodes exist already (make up?): run \`make down\` first"
fi
start=$(date +%s)
# -p 1: packages under test/e2e must never run real nodes at the same time (and -v streams).
"$GO" test -tags e2e -count=1 -p 1 -v -timeout 60m ./test/e2e/... "$@" 9>&-
echo "e2e: passed in $(( $(date +%s) - start )) s"
