#!/usr/bin/env bash
# Prepares this Debian host for real selfkube nodes: installs containerd, runc, the CNI plugins,
# iptables, conntrack, socat and etcdctl, links the CNI plugins where kubelet and containerd look
# for them, and writes the containerd config every node runs with:
#
#   $SELFKUBE_CACHE/containerd-config.toml
#
# Idempotent: a second run installs nothing and rewrites the config only if it changed.
# `hack/host-setup.sh --print-config` only prints the config.
set -euo pipefail

SELFKUBE_CACHE=${SELFKUBE_CACHE:-/var/cache/selfkube-test}
KUBE_VERSION=${KUBE_VERSION:-v1.36.3}
IMAGE_REPOSITORY=${IMAGE_REPOSITORY:-registry.local}
CNI_BIN_DIR=/opt/cni/bin
PACKAGES=(containerd runc containernetworking-plugins iptables conntrack socat etcd-client)

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'host-setup: %s\n' "$*" >&2; exit 1; }

# pause_image prints the sandbox image: the pause reference kubeadm asks for when the cached
# kubeadm is there, otherwise the tag kubeadm v1.36 uses.
pause_image() {
  if [[ -n ${PAUSE_IMAGE:-} ]]; then
    echo "$PAUSE_IMAGE"
    return
  fi
  local kubeadm=$SELFKUBE_CACHE/bin/kubernetes-$KUBE_VERSION/kubeadm ref
  if [[ -x $kubeadm ]]; then
    ref=$("$kubeadm" config images list --kubernetes-version "$KUBE_VERSION" --image-repository "$IMAGE_REPOSITORY" |
      grep "^$IMAGE_REPOSITORY/pause:") || die "$kubeadm lists no pause image"
    echo "$ref"
    return
  fi
  echo "$IMAGE_REPOSITORY/pause:3.10.2"
}

# containerd_config prints the config of a node's containerd (containerd 1.6, config version 2).
# Paths are the standard ones: each node has its own /var/lib/containerd and /run/containerd.
containerd_config() {
  cat <<EOF
# Written by selfkube hack/host-setup.sh: the containerd config of every selfkube test node.
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$(pause_image)"
  # This VM refuses a negative oom_score_adj even for root: without this every sandbox fails
  # with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "/etc/cni/net.d"
EOF
}

install_packages() {
  local missing=() pkg
  for pkg in "${PACKAGES[@]}"; do
    [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) == "install ok installed" ]] || missing+=("$pkg")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    log "packages already installed: ${PACKAGES[*]}"
    return
  fi
  log "installing ${missing[*]}"
  apt-get update -q >&2 || die "apt-get update failed: check the Debian mirror in /etc/apt/sources.list*"
  # No init system runs here: keep the packages' maintainer scripts from starting services.
  local policy=/usr/sbin/policy-rc.d added_policy=
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added_policy=1
  fi
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 || rc=$?
  [[ -z $added_policy ]] || rm -f "$policy"
  [[ $rc -eq 0 ]] || die "apt-get install ${missing[*]} failed (exit $rc): see the apt output above"
}

# link_cni_plugins makes every Debian CNI plugin in /usr/lib/cni visible in $CNI_BIN_DIR,
# leaving alone what is already there.
link_cni_plugins() {
  mkdir -p "$CNI_BIN_DIR"
  local plugin linked=0
  for plugin in /usr/lib/cni/*; do
    [[ -x $plugin ]] || continue
    [[ -e $CNI_BIN_DIR/${plugin##*/} ]] && continue
    ln -s "$plugin" "$CNI_BIN_DIR/${plugin##*/}"
    linked=$((linked + 1))
  done
  log "CNI plugins in $CNI_BIN_DIR: $(ls "$CNI_BIN_DIR" | wc -l) ($linked newly linked)"
}

write_containerd_config() {
  local file=$SELFKUBE_CACHE/containerd-config.toml tmp
  mkdir -p "$SELFKUBE_CACHE"
  tmp=$(mktemp "$file.XXXXXX")
  containerd_config >"$tmp"
  # containerd itself must accept it, with the settings this host needs in effect.
  local dump
  dump=$(containerd --config "$tmp" config dump 2>&1) || { rm -f "$tmp"; die "containerd rejects the config: $dump"; }
  local want
  for want in 'restrict_oom_score_adj = true' 'SystemdCgroup = false' "sandbox_image = \"$(pause_image)\"" \
    'snapshotter = "overlayfs"' "bin_dir = \"$CNI_BIN_DIR\""; do
    grep -qF "$want" <<<"$dump" || { rm -f "$tmp"; die "containerd's view of the config lacks '$want'"; }
  done
  if cmp -s "$tmp" "$file"; then
    rm -f "$tmp"
    log "containerd config unchanged ($file)"
    return
  fi
  mv "$tmp" "$file"
  log "wrote containerd config ($file)"
}

main() {
  if [[ ${1:-} == --print-config ]]; then
    containerd_config
    return
  fi
  [[ $(id -u) == 0 ]] || die "needs root (it installs packages): run it with sudo"
  command -v apt-get >/dev/null || die "apt-get not found: host-setup supports Debian hosts only"
  install_packages
  link_cni_plugins
  write_containerd_config
  log "host ready: containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1{print $3}')"
}

main "$@"
