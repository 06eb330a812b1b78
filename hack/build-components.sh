#!/usr/bin/env bash
# Builds the pinned components selfkube runs against, from the Go module proxy, into
# $SELFKUBE_CACHE/bin (layout: hack/README.md). Cached by version: a second run only checks.
#
#   KUBE_VERSION=v1.35.4 hack/build-components.sh     # another Kubernetes version
#   hack/build-components.sh kubernetes etcd          # only some of: kubernetes etcd coredns cni pause
#
# Each wrapper module lives in $SELFKUBE_CACHE/src/<name>-<version>, outside the repository, and
# builds one thing at a time (this machine has 2 cores).
set -euo pipefail

SELFKUBE_CACHE=${SELFKUBE_CACHE:-/var/cache/selfkube-test}
KUBE_VERSION=${KUBE_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.6}
COREDNS_VERSION=${COREDNS_VERSION:-v1.15.0}
CNI_PLUGINS_VERSION=${CNI_PLUGINS_VERSION:-v1.9.1}
GO=${GO:-go}

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN_ROOT=$SELFKUBE_CACHE/bin
SRC_ROOT=$SELFKUBE_CACHE/src
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'build-components: %s\n' "$*" >&2; exit 1; }

# have_all DIR NAME... succeeds when every NAME is an executable file in DIR and DIR/.complete exists.
have_all() {
  local dir=$1; shift
  [[ -f $dir/.complete ]] || return 1
  local name
  for name in "$@"; do [[ -x $dir/$name ]] || return 1; done
}

# wrapper_module DIR "MODULE... " VERSION PKG...: a throwaway module in DIR that requires each
# MODULE at VERSION and imports PKG... from a tools.go, so `go mod tidy` resolves exactly what
# the build needs.
wrapper_module() {
  local dir=$1 modules=$2 version=$3; shift 3
  mkdir -p "$dir"
  rm -f "$dir/go.mod" "$dir/go.sum"
  (cd "$dir" && "$GO" mod init selfkube.local/build >/dev/null 2>&1) || die "go mod init in $dir failed"
  {
    echo '//go:build tools'
    echo
    echo '// Package build pins the programs this wrapper module builds.'
    echo 'package build'
    echo
    echo 'import ('
    local pkg
    for pkg in "$@"; do echo "	_ \"$pkg\""; done
    echo ')'
  } >"$dir/tools.go"
  local module
  for module in $modules; do
    (cd "$dir" && "$GO" mod edit -require="$module@$version") || die "requiring $module@$version failed"
  done
}

tidy() {
  local dir=$1
  (cd "$dir" && "$GO" mod tidy) || die "go mod tidy in $dir failed: is the Go module proxy reachable ($("$GO" env GOPROXY))?"
}

# install_dir TMP DEST: replace DEST with the freshly built TMP and mark it complete.
install_dir() {
  local tmp=$1 dest=$2
  date -u +%Y-%m-%dT%H:%M:%SZ >"$tmp/.complete"
  rm -rf "$dest"
  mkdir -p "$(dirname "$dest")"
  mv "$tmp" "$dest"
}

build_kubernetes() {
  local ver=$KUBE_VERSION
  local dest=$BIN_ROOT/kubernetes-$ver
  local names=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubeadm)
  if have_all "$dest" "${names[@]}"; then
    log "reused kubernetes $ver ($dest)"
    return
  fi
  [[ $ver =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || die "KUBE_VERSION=$ver: expected v1.<minor>.<patch>, e.g. v1.36.3"
  local minor=${BASH_REMATCH[1]} patch=${BASH_REMATCH[2]}
  local staging_ver=v0.$minor.$patch
  local start=$SECONDS
  log "building kubernetes $ver (cold: about 5 minutes)"

  local src=$SRC_ROOT/kubernetes-$ver pkgs=() name
  for name in "${names[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$name"); done
  wrapper_module "$src" k8s.io/kubernetes "$ver" "${pkgs[@]}"

  # kubernetes' own go.mod points every staging module at ./staging/src/...; point them at the
  # published v0.<minor>.<patch> instead.
  local gomod
  gomod=$(cd "$src" && "$GO" mod download -json "k8s.io/kubernetes@$ver" | sed -n 's/^\s*"GoMod": "\(.*\)",\?$/\1/p')
  [[ -f $gomod ]] || die "downloading k8s.io/kubernetes@$ver failed: is it published on the Go module proxy?"
  local staging
  staging=$(awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$gomod")
  [[ -n $staging ]] || die "found no staging replaces in $gomod: the wrapper recipe needs updating"
  local edits=() mod
  for mod in $staging; do edits+=("-replace=$mod=$mod@$staging_ver"); done
  (cd "$src" && "$GO" mod edit "${edits[@]}")
  tidy "$src"

  local pkg=k8s.io/component-base/version cpkg=k8s.io/client-go/pkg/version
  local build_date ldflags="-s -w" p
  build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  for p in "$pkg" "$cpkg"; do
    ldflags+=" -X $p.gitVersion=$ver -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=$build_date"
  done
  local tmp=$dest.tmp
  rm -rf "$tmp" && mkdir -p "$tmp"
  (cd "$src" && "$GO" build -trimpath -ldflags "$ldflags" -o "$tmp/" "${pkgs[@]}") ||
    die "building kubernetes $ver failed (wrapper module: $src)"
  local got
  got=$("$tmp/kube-apiserver" --version) || die "$tmp/kube-apiserver --version failed"
  [[ $got == "Kubernetes $ver" ]] || die "kube-apiserver --version printed '$got', want 'Kubernetes $ver': check the -X ldflags"
  install_dir "$tmp" "$dest"
  log "built kubernetes $ver in $((SECONDS - start))s ($dest)"
}

# build_simple NAME VERSION "MODULE..." PKG[=BINARY]...: a component released as MODULE... at
# VERSION, built from one wrapper module. A binary is named BINARY, or else after the last
# element of its package path (with /v3-style suffixes dropped).
build_simple() {
  local name=$1 ver=$2 modules=$3; shift 3
  local dest=$BIN_ROOT/$name-$ver pkgs=() bins=() arg base
  for arg in "$@"; do
    pkgs+=("${arg%%=*}")
    if [[ $arg == *=* ]]; then
      bins+=("${arg#*=}")
    else
      base=${arg%/v[0-9]*}
      bins+=("${base##*/}")
    fi
  done
  if have_all "$dest" "${bins[@]}"; then
    log "reused $name $ver ($dest)"
    return
  fi
  local start=$SECONDS src=$SRC_ROOT/$name-$ver
  log "building $name $ver"
  wrapper_module "$src" "$modules" "$ver" "${pkgs[@]}"
  tidy "$src"
  local tmp=$dest.tmp i
  rm -rf "$tmp" && mkdir -p "$tmp"
  for i in "${!pkgs[@]}"; do
    (cd "$src" && "$GO" build -trimpath -ldflags "-s -w" -o "$tmp/${bins[$i]}" "${pkgs[$i]}") ||
      die "building ${pkgs[$i]}@$ver failed (wrapper module: $src)"
  done
  install_dir "$tmp" "$dest"
  log "built $name $ver in $((SECONDS - start))s ($dest)"
}

build_etcd() {
  # Both modules pinned: left to tidy, etcdctl would come at its latest release and pull the
  # shared etcd modules (api, client, pkg) past the server's.
  build_simple etcd "$ETCD_VERSION" "go.etcd.io/etcd/server/v3 go.etcd.io/etcd/etcdctl/v3" \
    go.etcd.io/etcd/server/v3=etcd go.etcd.io/etcd/etcdctl/v3
  local got
  got=$("$BIN_ROOT/etcd-$ETCD_VERSION/etcd" --version | sed -n 's/^etcd Version: //p')
  [[ v$got == "$ETCD_VERSION" ]] || die "etcd reports version $got, want $ETCD_VERSION"
  got=$("$BIN_ROOT/etcd-$ETCD_VERSION/etcdctl" version | sed -n 's/^etcdctl version: //p')
  [[ v$got == "$ETCD_VERSION" ]] || die "etcdctl reports version $got, want $ETCD_VERSION"
}

build_pause() {
  local dest=$BIN_ROOT/pause stamp sum
  sum=$(cat "$HACK_DIR"/pause/*.go "$HACK_DIR/go.mod" | sha256sum | cut -d' ' -f1)
  stamp=$(cat "$dest/.complete" 2>/dev/null || true)
  if [[ -x $dest/pause && $stamp == "$sum" ]]; then
    log "reused pause ($dest)"
    return
  fi
  local tmp=$dest.tmp
  rm -rf "$tmp" && mkdir -p "$tmp"
  (cd "$HACK_DIR" && "$GO" build -trimpath -ldflags "-s -w" -o "$tmp/pause" ./pause) || die "building hack/pause failed"
  install_dir "$tmp" "$dest"
  echo "$sum" >"$dest/.complete"
  log "built pause ($dest)"
}

main() {
  local what=("$@")
  [[ ${#what[@]} -gt 0 ]] || what=(pause cni etcd coredns kubernetes)
  command -v "$GO" >/dev/null || die "go not found: install Go $(sed -n 's/^go //p' "$HACK_DIR/go.mod") or set GO"
  local start=$SECONDS w
  for w in "${what[@]}"; do
    case $w in
      kubernetes) build_kubernetes ;;
      etcd) build_etcd ;;
      coredns) build_simple coredns "$COREDNS_VERSION" github.com/coredns/coredns github.com/coredns/coredns ;;
      cni)
        local p=github.com/containernetworking/plugins/plugins
        build_simple cni-plugins "$CNI_PLUGINS_VERSION" github.com/containernetworking/plugins \
          "$p/main/bridge" "$p/ipam/host-local" "$p/main/loopback" "$p/meta/portmap"
        ;;
      pause) build_pause ;;
      *) die "unknown component '$w': choose from kubernetes etcd coredns cni pause" ;;
    esac
  done
  log "components ready in $SELFKUBE_CACHE/bin ($((SECONDS - start))s)"
}

main "$@"
