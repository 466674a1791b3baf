#!/usr/bin/env bash
# make kind-up: a kind cluster with the operator image built, loaded and deployed, plus samples.
# Needs a running Docker engine; kind itself is built from the Go module proxy into .cache/tools.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cluster="${KIND_CLUSTER:-bandsy}"
image="ghcr.io/feinwaru/bandsy-operator:dev"
KIND_VERSION="${KIND_VERSION:-v0.29.0}"

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  echo "make kind-up needs a running Docker engine (docker info failed)." >&2
  echo "Without Docker use 'make cluster-up' / 'make run': a local control plane built from source." >&2
  exit 1
fi
kind="$root/.cache/tools/kind-$KIND_VERSION/kind"
if [[ ! -x "$kind" ]]; then
  GOTOOLCHAIN=local GOBIN="$(dirname "$kind")" go install "sigs.k8s.io/kind@$KIND_VERSION"
fi
kubectl="$(hack/control-plane/build.sh)/kubectl"

"$kind" get clusters | grep -qx "$cluster" || "$kind" create cluster --name "$cluster"
docker build -t "$image" .
"$kind" load docker-image "$image" --name "$cluster"
kubeconfig="$root/.local/kind-kubeconfig"
mkdir -p "$root/.local"
"$kind" get kubeconfig --name "$cluster" > "$kubeconfig"
export KUBECONFIG="$kubeconfig"
"$kubectl" kustomize deploy/ | sed "s#ghcr.io/feinwaru/bandsy-operator:latest#$image#" \
  | "$kubectl" apply --server-side -f -
"$kubectl" wait --for=condition=Established crd --all --timeout=60s
"$kubectl" apply --server-side -f deploy/samples/
"$kubectl" -n bandsy-system rollout status deployment/bandsy-operator --timeout=180s
echo "kind cluster $cluster is up: export KUBECONFIG=$kubeconfig; kubectl get bsvc"
