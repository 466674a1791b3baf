#!/usr/bin/env bash
# Builds the node's binaries that are not part of Kubernetes from the Go module proxy into a
# git-ignored cache, one directory per component and version, reused when complete:
# containerd (+ shim, ctr), CoreDNS, kube-router (NetworkPolicy only) and this directory's own
# small programs (pause, podcheck), keyed by a hash of their sources.
# Prints one `name=path` line per binary (kubelet & co. come from hack/control-plane/build.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${BANDSY_CACHE_DIR:-$root/.cache}/node"
CONTAINERD_VERSION=v2.4.2
COREDNS_VERSION=v1.15.0  # also in coredns/go.mod
# The newest kube-router v2 the module proxy serves (v2.1.0; it refuses later versions).
KUBE_ROUTER_VERSION=v2.1.0

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=

# cached DIR BUILD_FUNCTION BINARY... : run BUILD_FUNCTION TMPDIR unless every binary is in DIR,
# then move them into place together, so a killed build never leaves a half cache.
cached() {
  local dir="$1" fn="$2"; shift 2
  local b all=1
  for b in "$@"; do [[ -x "$dir/$b" ]] || all=0; done
  if [[ $all == 0 ]]; then
    mkdir -p "$dir"
    local tmp; tmp="$(mktemp -d "$dir/.build.XXXXXX")"
    local start=$SECONDS
    echo "building $(basename "$dir")" >&2
    if ! "$fn" "$tmp"; then rm -rf "$tmp"; return 1; fi
    for b in "$@"; do mv "$tmp/$b" "$dir/$b"; done
    rm -rf "$tmp"
    echo "built $(basename "$dir") in $((SECONDS - start)) s" >&2
  fi
  for b in "$@"; do echo "$b=$dir/$b"; done
}

build_containerd() {
  GOBIN="$1" go install -trimpath -tags no_btrfs,no_devmapper,no_zfs \
    -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=${CONTAINERD_VERSION}" \
    "github.com/containerd/containerd/v2/cmd/containerd@${CONTAINERD_VERSION}" \
    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@${CONTAINERD_VERSION}" \
    "github.com/containerd/containerd/v2/cmd/ctr@${CONTAINERD_VERSION}" >&2
}

# CoreDNS from coredns/main.go: the node's few plugins only (its go.mod pins the version).
build_coredns() {
  (cd "$here/coredns" && go build -trimpath -ldflags "-s -w" -o "$1/coredns" .) >&2
}

build_kube_router() {
  GOBIN="$1" go install -trimpath -ldflags "-s -w" \
    "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@${KUBE_ROUTER_VERSION}" >&2
}

build_own() {
  (cd "$here" && go build -trimpath -ldflags "-s -w" -o "$1/" ./cmd/pause ./cmd/podcheck) >&2
}

own_key="$(cd "$here" && cat go.mod $(find cmd -name '*.go' | sort) | sha256sum | cut -c1-16)"
coredns_key="$(cd "$here/coredns" && cat go.mod go.sum main.go | sha256sum | cut -c1-16)"
cached "$cache/containerd-${CONTAINERD_VERSION}" build_containerd containerd containerd-shim-runc-v2 ctr
cached "$cache/coredns-${COREDNS_VERSION}-${coredns_key}" build_coredns coredns
cached "$cache/kube-router-${KUBE_ROUTER_VERSION}" build_kube_router kube-router
cached "$cache/own-${own_key}" build_own pause podcheck
