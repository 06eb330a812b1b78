#!/usr/bin/env bash
# Writes the OCI image tarballs of every component into $SELFKUBE_CACHE/images (layout:
# hack/README.md), ready for `ctr -n k8s.io images import`. Needs `make components` first and
# `make build` for the selfkube image. A tarball is rebuilt only when its inputs changed.
#
# kube-proxy's image carries iptables (nft backend), nft and conntrack, and busybox's image Debian's
# busybox-static: both are built from the Debian packages (apt-get download + dpkg -x), with
# every package they depend on, and checked by running them under chroot.
set -euo pipefail

SELFKUBE_CACHE=${SELFKUBE_CACHE:-/var/cache/selfkube-test}
KUBE_VERSION=${KUBE_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.6}
COREDNS_VERSION=${COREDNS_VERSION:-v1.15.0}
CNI_PLUGINS_VERSION=${CNI_PLUGINS_VERSION:-v1.9.1}
# Other etcd releases (upgrade targets), space-separated: each its own tarball (etcd_<version>.tar).
EXTRA_ETCD_VERSIONS=${EXTRA_ETCD_VERSIONS:-}
IMAGE_REPOSITORY=${IMAGE_REPOSITORY:-registry.local}
GO=${GO:-go}

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$HACK_DIR")
SELFKUBE_BINARY=${SELFKUBE_BINARY:-$REPO_DIR/_output/bin/selfkube}
BIN_ROOT=$SELFKUBE_CACHE/bin
ROOTFS_ROOT=$SELFKUBE_CACHE/rootfs

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'build-images: %s\n' "$*" >&2; exit 1; }

# package_closure PKG...: PKG and everything it depends on (no recommends), one per line.
package_closure() {
  apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances "$@" | grep -E '^[a-z0-9]' | sort -u
}

# candidates PKG...: "PKG=VERSION" per package, VERSION being what apt would download.
candidates() {
  apt-cache policy "$@" | awk '/^[^ ]/ {pkg = $1; sub(/:$/, "", pkg)} /^ *Candidate:/ {print pkg "=" $2}'
}

# pin_packages PKG...: "NAME=VERSION" for PKG and everything it depends on; fails when apt
# knows no version of one of them (no apt lists yet, or a package gone from the mirror).
pin_packages() {
  local pkgs pinned pin
  mapfile -t pkgs < <(package_closure "$@")
  [[ ${#pkgs[@]} -gt 0 ]] || return 1
  mapfile -t pinned < <(candidates "${pkgs[@]}")
  [[ ${#pinned[@]} -eq ${#pkgs[@]} ]] || return 1
  for pin in "${pinned[@]}"; do
    [[ $pin != *"=(none)" ]] || return 1
  done
  printf '%s\n' "${pinned[@]}"
}

# debian_rootfs NAME FINISH PKG...: extracts PKG and its dependencies into
# $ROOTFS_ROOT/NAME-<hash of package versions and of this script>/root, runs FINISH ROOT
# (links, checks) and prints ROOT. Reused while neither changes.
debian_rootfs() {
  local name=$1 finish=$2; shift 2
  local pins pinned
  if ! pins=$(pin_packages "$@"); then
    log "apt has no candidate for some of $*: running apt-get update"
    apt-get update -q >&2 || die "apt-get update failed: check the Debian mirror in /etc/apt/sources.list*"
    pins=$(pin_packages "$@") || die "apt knows no version of some of $* (or of what they depend on): is it still on the Debian mirror?"
  fi
  mapfile -t pinned <<<"$pins"
  local key dir
  key=$(cat <(printf '%s\n' "${pinned[@]}") "${BASH_SOURCE[0]}" | sha256sum | cut -c1-12)
  dir=$ROOTFS_ROOT/$name-$key
  if [[ -f $dir/.complete ]]; then
    log "reused $name root filesystem ($dir)"
    echo "$dir/root"
    return
  fi
  log "building $name root filesystem from ${pinned[*]}"
  local debs tmp=$dir.tmp deb
  debs=$(mktemp -d)
  chown _apt "$debs" 2>/dev/null || true # apt downloads as the _apt user where it can
  trap 'rm -rf "$debs"' RETURN
  (cd "$debs" && apt-get download -q "${pinned[@]}" >&2) ||
    die "apt-get download ${pinned[*]} failed: run \`apt-get update\` and check the Debian mirror"
  rm -rf "$tmp" && mkdir -p "$tmp/root"
  for deb in "$debs"/*.deb; do
    dpkg -x "$deb" "$tmp/root" || die "extracting $deb failed"
  done
  rm -rf "$tmp"/root/usr/share/{doc,man,info,lintian}
  "$finish" "$tmp/root" >&2 || die "checking the $name root filesystem in $tmp/root failed (see above)"
  date -u +%Y-%m-%dT%H:%M:%SZ >"$tmp/.complete" # beside the root filesystem, not in the image
  find "$ROOTFS_ROOT" -maxdepth 1 -name "$name-*" ! -name "$name-$key*" -exec rm -rf {} +
  rm -rf "$dir" && mv "$tmp" "$dir"
  echo "$dir/root"
}

# check_libraries ROOT: every program and shared library under ROOT finds all it links to
# inside ROOT.
check_libraries() {
  local root=$1 f missing=0 out
  while IFS= read -r f; do
    [[ $(head -c4 "$f" | tr -d '\0') == $'\x7fELF' ]] || continue
    if ! out=$(chroot "$root" /lib64/ld-linux-x86-64.so.2 --list "/${f#"$root"/}" 2>&1) ||
      grep -q 'not found' <<<"$out"; then
      printf 'missing libraries for /%s:\n%s\n' "${f#"$root"/}" "$out"
      missing=1
    fi
  done < <(find "$root/usr/sbin" "$root/usr/lib/x86_64-linux-gnu/xtables" -type f)
  return $missing
}

# finish_iptables ROOT: makes iptables/ip6tables the nft variants (Debian's postinst does that
# with update-alternatives, which dpkg -x does not run) and proves that kube-proxy's rules load,
# the statistic match (which needs libm) included, in a throwaway network namespace.
finish_iptables() {
  local root=$1 fam tool
  for fam in iptables ip6tables; do
    for tool in "" -restore -save; do
      ln -sfn "$fam-nft$tool" "$root/usr/sbin/$fam$tool"
    done
  done
  check_libraries "$root"
  local rules='*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SVC-TEST - [0:0]
-A OUTPUT -m comment --comment "selfkube check" -j KUBE-SVC-TEST
-A KUBE-SVC-TEST -p tcp -m statistic --mode random --probability 0.5 -j DNAT --to-destination 10.0.0.1:80
-A KUBE-SVC-TEST -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.0.2:80
-A POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE --random-fully
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate INVALID -j DROP
-A INPUT -p tcp -m multiport --dports 10250,10256 -m addrtype --dst-type LOCAL -j ACCEPT
COMMIT
'
  local saved
  saved=$(unshare --net -- sh -c "chroot '$root' /usr/sbin/iptables-restore && chroot '$root' /usr/sbin/iptables-save" <<<"$rules") ||
    { echo "iptables-restore in the image failed"; return 1; }
  grep -q -- '-m statistic --mode random --probability 0.5' <<<"$saved" ||
    { echo "the statistic rule did not survive iptables-restore:"; echo "$saved"; return 1; }
  unshare --net -- chroot "$root" /usr/sbin/ip6tables-restore <<<$'*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m conntrack --ctstate INVALID -j DROP\nCOMMIT\n' ||
    { echo "ip6tables-restore in the image failed"; return 1; }
  chroot "$root" /usr/sbin/iptables --version | grep -q nf_tables ||
    { echo "iptables in the image is not the nf_tables variant"; return 1; }
  chroot "$root" /usr/sbin/conntrack --version >/dev/null
  # kube-proxy's nftables mode (and its cleanup of that mode's rules in iptables mode) runs nft.
  local listed
  listed=$(unshare --net -- sh -c "chroot '$root' /usr/sbin/nft -f - && chroot '$root' /usr/sbin/nft list ruleset" <<<'
table ip kube-proxy {
  map service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }
  chain nat-prerouting { type nat hook prerouting priority dstnat ; ip daddr . meta l4proto . th dport vmap @service-ips ; }
}') || { echo "nft in the image failed"; return 1; }
  grep -q 'table ip kube-proxy' <<<"$listed" || { echo "nft did not load the kube-proxy table:"; echo "$listed"; return 1; }
}

# finish_busybox ROOT: a link for every applet, then a shell that runs.
finish_busybox() {
  local root=$1 applet
  for applet in $(chroot "$root" /bin/busybox --list-full); do
    [[ -e $root/$applet || -L $root/$applet ]] && continue
    mkdir -p "$root/$(dirname "$applet")"
    ln -s /bin/busybox "$root/$applet"
  done
  [[ $(chroot "$root" /bin/sh -c 'echo $((6 * 7))') == 42 ]] || { echo "busybox sh does not run"; return 1; }
}

main() {
  local kube_bin=$BIN_ROOT/kubernetes-$KUBE_VERSION
  local need
  for need in "$kube_bin/kubeadm" "$BIN_ROOT/etcd-$ETCD_VERSION/etcd" "$BIN_ROOT/coredns-$COREDNS_VERSION/coredns" \
    "$BIN_ROOT/cni-plugins-$CNI_PLUGINS_VERSION/bridge" "$BIN_ROOT/pause/pause"; do
    [[ -x $need ]] || die "$need not found: run \`make components\` first"
  done
  [[ -x $SELFKUBE_BINARY ]] || die "$SELFKUBE_BINARY not found: run \`make build\` first (or set SELFKUBE_BINARY)"
  for need in apt-get apt-cache dpkg chroot unshare; do
    command -v "$need" >/dev/null || die "$need not found: this script needs a Debian host with util-linux"
  done
  [[ $(id -u) == 0 ]] || die "needs root (chroot and a network namespace check the Debian root filesystems): run it with sudo"

  local extra=() v
  for v in $EXTRA_ETCD_VERSIONS; do
    [[ -x $BIN_ROOT/etcd-$v/etcd ]] || die "$BIN_ROOT/etcd-$v/etcd not found: run \`ETCD_VERSION=$v hack/build-components.sh etcd\` first"
    extra+=(-extra-etcd "$v=$BIN_ROOT/etcd-$v")
  done

  local start=$SECONDS iptables_root busybox_root
  iptables_root=$(debian_rootfs iptables finish_iptables iptables conntrack nftables)
  busybox_root=$(debian_rootfs busybox finish_busybox busybox-static)

  (cd "$HACK_DIR" && "$GO" run ./images \
    -out "$SELFKUBE_CACHE/images" \
    -kubeadm "$kube_bin/kubeadm" -kubernetes-version "$KUBE_VERSION" -repository "$IMAGE_REPOSITORY" \
    -kube-bin "$kube_bin" \
    -etcd-bin "$BIN_ROOT/etcd-$ETCD_VERSION" -etcd-version "$ETCD_VERSION" \
    -coredns-bin "$BIN_ROOT/coredns-$COREDNS_VERSION" -coredns-version "$COREDNS_VERSION" \
    -cni-bin "$BIN_ROOT/cni-plugins-$CNI_PLUGINS_VERSION" -pause "$BIN_ROOT/pause/pause" \
    -iptables-root "$iptables_root" -busybox-root "$busybox_root" -selfkube "$SELFKUBE_BINARY" "${extra[@]}") ||
    die "writing the image tarballs failed (see above)"
  log "images ready in $SELFKUBE_CACHE/images ($((SECONDS - start))s)"
}

main "$@"
