#!/usr/bin/env bash
# Proves the image tarballs in $SELFKUBE_CACHE/images work in a real container runtime: starts a
# throwaway containerd (the config `make host-setup` writes, with its own root, state and
# socket), imports every tarball and runs each image's program once. Needs root,
# `make host-setup` and `make images`. Takes about 20 seconds; leaves nothing behind.
set -euo pipefail

SELFKUBE_CACHE=${SELFKUBE_CACHE:-/var/cache/selfkube-test}
KUBE_VERSION=${KUBE_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.6}
COREDNS_VERSION=${COREDNS_VERSION:-v1.15.0}
IMAGE_REPOSITORY=${IMAGE_REPOSITORY:-registry.local}

die() { printf 'check-images: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "needs root (it runs containerd): run it with sudo"
config=$SELFKUBE_CACHE/containerd-config.toml
[[ -f $config ]] || die "$config not found: run \`make host-setup\` first"
kubeadm=$SELFKUBE_CACHE/bin/kubernetes-$KUBE_VERSION/kubeadm
[[ -x $kubeadm ]] || die "$kubeadm not found: run \`make components\` first"

dir=$(mktemp -d /tmp/selfkube-check-images.XXXXXX)
containerd_pid=
cleanup() {
  if [[ -n $containerd_pid ]]; then
    kill "$containerd_pid" 2>/dev/null || true
    wait "$containerd_pid" 2>/dev/null || true
  fi
  # Snapshots may still be mounted if containerd died abruptly.
  grep -o "$dir/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

sed -e "s|^root = .*|root = \"$dir/root\"|" -e "s|^state = .*|state = \"$dir/state\"|" \
  -e "s|^  address = .*|  address = \"$dir/containerd.sock\"|" "$config" >"$dir/config.toml"
containerd --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 &
containerd_pid=$!
ctr() { command ctr --address "$dir/containerd.sock" --namespace k8s.io "$@"; }
for _ in $(seq 100); do ctr version >/dev/null 2>&1 && break; sleep 0.1; done
ctr version >/dev/null 2>&1 || { cat "$dir/containerd.log" >&2; die "the throwaway containerd did not start (log above)"; }

shopt -s nullglob
tarballs=("$SELFKUBE_CACHE"/images/*.tar)
[[ ${#tarballs[@]} -gt 0 ]] || die "no tarballs in $SELFKUBE_CACHE/images: run \`make images\` first"
for tarball in "${tarballs[@]}"; do
  ctr images import "$tarball" >/dev/null || die "importing $tarball failed"
done
echo "imported ${#tarballs[@]} tarballs"

failed=0
n=0
# expect WANT IMAGE ARGS...: runs ARGS in IMAGE (privileged, in its own network namespace);
# it must succeed and print WANT (anything, when WANT is empty).
expect() {
  local want=$1 image=$2 out; shift 2
  n=$((n + 1))
  if out=$(ctr run --rm --privileged "$image" "check-$n" "$@" 2>&1) && grep -qF -- "$want" <<<"$out"; then
    printf 'ok   %-50s %s\n' "$image" "$*"
  else
    printf 'FAIL %-50s %s\n     wanted %q in: %s\n' "$image" "$*" "$want" "$out"
    failed=1
  fi
}

mapfile -t refs < <("$kubeadm" config images list --kubernetes-version "$KUBE_VERSION" --image-repository "$IMAGE_REPOSITORY")
for ref in "${refs[@]}"; do
  repo=${ref%:*}
  case ${repo##*/} in
    kube-apiserver | kube-controller-manager | kube-scheduler)
      expect "Kubernetes $KUBE_VERSION" "$ref" "${repo##*/}" --version ;;
    kube-proxy)
      expect "Kubernetes $KUBE_VERSION" "$ref" kube-proxy --version
      # Each container has its own network namespace: this rule never touches the host.
      expect "" "$ref" iptables -t nat -A OUTPUT -p tcp -m statistic --mode random --probability 0.5 \
        -j DNAT --to-destination 10.0.0.1:80
      expect "nf_tables" "$ref" iptables --version
      expect "nftables" "$ref" nft --version
      expect "conntrack" "$ref" conntrack --version
      ;;
    etcd)
      expect "etcd Version: ${ETCD_VERSION#v}" "$ref" etcd --version
      expect "etcdctl version: ${ETCD_VERSION#v}" "$ref" etcdctl version
      ;;
    coredns) expect "CoreDNS-${COREDNS_VERSION#v}" "$ref" /coredns -version ;;
    pause) expect "pause" "$ref" /pause --version ;;
    *) echo "skip $ref (no check for it)" ;;
  esac
done
expect "42" "$IMAGE_REPOSITORY/busybox:latest" sh -c 'echo $((6 * 7))'
expect "selfkube" "$IMAGE_REPOSITORY/selfkube:dev" /usr/local/bin/selfkube version
for plugin in bridge host-local loopback portmap; do
  expect "CNI" "$IMAGE_REPOSITORY/selfkube:dev" "/opt/cni/bin/$plugin" --version
done

[[ $failed == 0 ]] || die "some images do not work (see FAIL above)"
echo "all images work"
