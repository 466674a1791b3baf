#!/usr/bin/env bash
# Builds the test app (SPEC §8.1) as a static binary at OUTPUT (relative to the caller's directory).
# It caches nothing itself: the caller decides where the binary lives and when to rebuild; Go's
# own build and module caches make a rebuild of unchanged sources take seconds.
#
#   hack/testapp/build.sh OUTPUT     e.g. hack/testapp/build.sh .cache/testapp/testapp
#
# GOOS/GOARCH from the environment are honoured (default: this host), e.g. for a node of another arch.
set -euo pipefail
if [[ $# -ne 1 || -z "$1" ]]; then
  echo "usage: $0 OUTPUT" >&2
  exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$(realpath -m -- "$1")"
mkdir -p "$(dirname "$out")"
cd "$here"
# CGO off: pure-Go DNS and no libc, so the binary runs in an image that holds nothing else.
# -trimpath and no VCS stamp: the same sources give the same binary in any checkout.
# -mod=readonly: go.sum is the truth; a missing or changed module fails instead of being fetched anew.
GOTOOLCHAIN=local CGO_ENABLED=0 go build -mod=readonly -buildvcs=false -trimpath \
  -ldflags "-s -w" -o "$out" .
echo "$out"
