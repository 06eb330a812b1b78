#!/usr/bin/env bash
# Removes whatever a killed e2e, bench or up run left behind: node processes, cgroups,
# veths, network namespaces, the bridge and its routes, mounts, node state.
source "$(dirname "$0")/e2e-lib.sh"
require_root
lock_nodes
build_nodes
"$NODES_BIN" cleanup 9>&-
"$NODES_BIN" leftovers || die "leftovers remain (listed above)"
echo "clean-nodes: nothing of the node harness is left"
