#!/usr/bin/env bash
# Builds Traefik (the node's Gateway API and Ingress controller) at the version go.mod pins, from
# the Go module proxy (go.sum checks the download), into a git-ignored cache keyed by version;
# reuses it when present. `go install module@version` refuses Traefik (its go.mod has replace
# directives), so the build runs inside a writable copy of the module's own directory, where
# they apply. The web dashboard's assets are not in the module: the dashboard stays off.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
MODULE=github.com/traefik/traefik/v3
VERSION="$(awk -v m="$MODULE" '$1==m{print $2}' "$here/go.mod")"
cache="${BANDSY_CACHE_DIR:-$root/.cache}/traefik/$VERSION"
if [[ ! -x "$cache/traefik" ]]; then
  mkdir -p "$cache"
  tmp="$(mktemp -d "$cache/.build.XXXXXX")"
  trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
  echo "building Traefik $VERSION into $cache (about 7 min cold)" >&2
  start=$SECONDS
  cp "$here/go.mod" "$here/go.sum" "$tmp/"
  export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
  dir="$(cd "$tmp" && go mod download -json "$MODULE" | awk -F'"' '$2=="Dir"{print $4}')"
  cp -r "$dir" "$tmp/src"
  chmod -R u+w "$tmp/src"
  (
    cd "$tmp/src"
    nice -n 10 go build -trimpath \
      -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$VERSION" \
      -o "$tmp/traefik" ./cmd/traefik
  ) >&2
  mv "$tmp/traefik" "$cache/traefik"
  echo "built Traefik $VERSION in $((SECONDS - start)) s" >&2
fi
echo "$cache/traefik"
