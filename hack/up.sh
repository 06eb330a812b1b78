#!/usr/bin/env bash
# A local kubeadm cluster on simulated nodes of this machine: NODES=N (default 1) nodes,
# node1 is the control plane. Writes _output/kubeconfig; `make down` removes the cluster.
source "$(dirname "$0")/e2e-lib.sh"
require_root
lock_nodes
NODES=${NODES:-1}
KUBECONFIG_OUT=$REPO_ROOT/_output/kubeconfig
build_nodes
# 9>&-: node processes must not inherit (and hold) the lock of this run.
"$NODES_BIN" cluster "$NODES" "$KUBECONFIG_OUT" 9>&-
cat <<EOT

Cluster is up. Use it from this host with:

  kubectl --kubeconfig $KUBECONFIG_OUT get nodes -o wide

Run commands inside a node with: $NODES_BIN exec node1 CMD...
Remove it with: make down
EOT
