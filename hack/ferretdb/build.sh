#!/usr/bin/env bash
# Builds FerretDB (a MongoDB wire-protocol server on PostgreSQL, for the Mongo backend's tests)
# from the Go module proxy into a git-ignored cache keyed by version; reuses it when present.
# FerretDB embeds version files its release tooling generates and refuses to start without
# them; the build vendors the module (declared as a tool in go.mod) and writes that file.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
FERRETDB_VERSION="$(awk '$1=="github.com/FerretDB/FerretDB"{print $2}' "$here/go.mod")"
cache="${BANDSY_CACHE_DIR:-$root/.cache}/ferretdb/$FERRETDB_VERSION"
if [[ ! -x "$cache/ferretdb" ]]; then
  mkdir -p "$cache"
  tmp="$(mktemp -d "$cache/.build.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  echo "building FerretDB $FERRETDB_VERSION into $cache" >&2
  cp "$here/go.mod" "$here/go.sum" "$tmp/"
  (
    cd "$tmp"
    export GOTOOLCHAIN=local CGO_ENABLED=0
    go mod vendor
    echo "$FERRETDB_VERSION" > vendor/github.com/FerretDB/FerretDB/build/version/version.txt
    go build -mod=vendor -trimpath -ldflags "-s -w" -o "$tmp/ferretdb" \
      github.com/FerretDB/FerretDB/cmd/ferretdb
  )
  mv "$tmp/ferretdb" "$cache/ferretdb"
fi
echo "$cache/ferretdb"
