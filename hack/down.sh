#!/usr/bin/env bash
# Removes the local cluster of `make up`: every node, its state, the bridge, and the
# kubeconfig; then checks that nothing of the harness is left on the machine.
source "$(dirname "$0")/e2e-lib.sh"
require_root
lock_nodes
build_nodes
"$NODES_BIN" cleanup 9>&-
rm -f "$REPO_ROOT/_output/kubeconfig"
"$NODES_BIN" leftovers || die "leftovers remain (listed above)"
echo "down: no nodes, netns, links, cgroups, mounts or node processes left"
