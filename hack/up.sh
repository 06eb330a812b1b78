#!/usr/bin/env bash
# A local self-hosted cluster on simulated nodes of this machine, made by `selfkube init`
# on node1 and `selfkube join` of the others: NODES=N (default 1). The control plane runs
# as DaemonSets and Deployments; node1 also runs workloads (no taint). Writes
# _output/kubeconfig; `make down` removes the cluster.
# KUBEADM=1 brings up a stock kubeadm cluster instead (the baseline).
source "$(dirname "$0")/e2e-lib.sh"
require_root
lock_nodes
NODES=${NODES:-1}
KUBECONFIG_OUT=$REPO_ROOT/_output/kubeconfig
SELFKUBE_BIN=$REPO_ROOT/_output/bin/selfkube
build_nodes
if [[ ${KUBEADM:-} == 1 ]]; then
  "$NODES_BIN" cluster "$NODES" "$KUBECONFIG_OUT" 9>&-
else
  [[ -x $SELFKUBE_BIN ]] || die "$SELFKUBE_BIN is missing: run make build"
  ip_of() { echo "172.31.0.$((10 + $1))"; }
  "$NODES_BIN" up node1 "$(ip_of 1)" --no-pod-network --selfkube "$SELFKUBE_BIN" 9>&-
  cat > "$SELFKUBE_E2E_DIR/nodes/node1/etc/kubernetes/selfkube.yaml" <<EOC
apiVersion: selfkube.io/v1alpha1
kind: ClusterConfiguration
imageRepository: registry.local
---
apiVersion: selfkube.io/v1alpha1
kind: NodeConfiguration
name: node1
advertiseAddress: $(ip_of 1)
taints: []
EOC
  join=$("$NODES_BIN" exec node1 "$SELFKUBE_BIN" init --config /etc/kubernetes/selfkube.yaml 9>&-)
  for i in $(seq 2 "$NODES"); do
    "$NODES_BIN" up "node$i" "$(ip_of "$i")" --no-pod-network --selfkube "$SELFKUBE_BIN" 9>&-
    # shellcheck disable=SC2086 # the join command is words
    "$NODES_BIN" exec "node$i" "$REPO_ROOT/_output/bin/"$join 9>&-
  done
  mkdir -p "$(dirname "$KUBECONFIG_OUT")"
  install -m 0600 "$SELFKUBE_E2E_DIR/nodes/node1/etc/kubernetes/admin.conf" "$KUBECONFIG_OUT"
fi
cat <<EOT

Cluster is up. Use it from this host with:

  kubectl --kubeconfig $KUBECONFIG_OUT get nodes -o wide
  kubectl --kubeconfig $KUBECONFIG_OUT -n kube-system get daemonsets,deployments,pods

Run commands inside a node with: $NODES_BIN exec node1 CMD...
Remove it with: make down
EOT
