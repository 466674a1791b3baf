#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager, kubectl and the node's kubelet,
# kube-proxy and kube-scheduler from the Go module proxy into a git-ignored cache keyed by
# version. Reuses the cache when every binary is present.
#
#   hack/control-plane/build.sh            build (or reuse) and print the bin directory
#   hack/control-plane/build.sh --regen    regenerate go.mod/go.sum from k8s.io/kubernetes's go.mod
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# The version actually used; v1.37.2 is served by the module proxy (fallbacks: 1.36.3, 1.35.4).
K8S_VERSION="${K8S_VERSION:-1.37.2}"
cache="${BANDSY_CACHE_DIR:-$root/.cache}/control-plane/v${K8S_VERSION}"
# Built by one `go build` (all but etcd), so the packages they share compile once.
k8s_binaries=(kube-apiserver kube-controller-manager kubectl kubelet kube-proxy kube-scheduler)
binaries=(etcd "${k8s_binaries[@]}")

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

regen() {
  local minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
  local staging="0.${K8S_VERSION#*.}"
  local kmod
  kmod="$(go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  cd "$here"
  rm -f go.mod go.sum
  go mod init bandsy.app/hack/control-plane >/dev/null 2>&1
  go mod edit -go="$(sed -n 's/^go //p' "$kmod")"
  go mod edit -require="k8s.io/kubernetes@v${K8S_VERSION}"
  # Every staging module k8s.io/kubernetes requires at v0.0.0 is published as v0.<minor>.<patch>.
  grep -E '^\s+k8s\.io/[^ ]+ v0\.0\.0$' "$kmod" | awk '{print $1}' | while read -r mod; do
    go mod edit -replace="${mod}=${mod}@v${staging}"
  done
  local b pkgs=()
  for b in "${k8s_binaries[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/${b}@v${K8S_VERSION}"); done
  go get "${pkgs[@]}"
  # etcd at exactly the version Kubernetes pins for its own server module.
  local etcd_version
  etcd_version="$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2}' "$kmod")"
  go get "go.etcd.io/etcd/server/v3@${etcd_version}"
  echo "regenerated go.mod for v${K8S_VERSION} (minor ${minor}, staging v${staging}, etcd ${etcd_version})" >&2
}

build() {
  local all_present=1
  for b in "${binaries[@]}"; do [[ -x "$cache/$b" ]] || all_present=0; done
  if [[ $all_present == 1 ]]; then echo "$cache"; return; fi
  mkdir -p "$cache"
  local tmp; tmp="$(mktemp -d "$cache/.build.XXXXXX")"
  trap 'rm -rf "$tmp"' RETURN
  local minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v${K8S_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor}"
  cd "$here"
  echo "building control plane v${K8S_VERSION} into $cache (first build takes many minutes)" >&2
  local start=$SECONDS
  # One go build for the Kubernetes binaries so their shared packages compile once.
  go build -trimpath -pgo=off -ldflags "$ldflags" -o "$tmp/" \
    "${k8s_binaries[@]/#/k8s.io/kubernetes/cmd/}" >&2
  go build -trimpath -pgo=off -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3 >&2
  # Move into place only when everything built, so a killed build never leaves a half cache.
  for b in "${binaries[@]}"; do mv "$tmp/$b" "$cache/$b"; done
  echo "built in $((SECONDS - start)) s" >&2
  echo "$cache"
}

case "${1:-}" in
  --regen) regen ;;
  "") build ;;
  *) echo "usage: $0 [--regen]" >&2; exit 2 ;;
esac
