#!/usr/bin/env bash
# pre-commit hook: the current branch must follow SPEC §2 (bandsyctl check-branch owns the rule).
set -euo pipefail
branch="$(git rev-parse --abbrev-ref HEAD)"
[[ "$branch" == "HEAD" ]] && exit 0  # detached (rebase, bisect): nothing to check
root="$(git rev-parse --show-toplevel)"
if ! "$root/.venv/bin/bandsyctl" check-branch "$branch" >/dev/null; then
  echo "Branch names like '$branch' are allowed but ignored by CI/CD and must not be merged." >&2
  echo "Rename it (git branch -m feature/<ticket>_<words>) or skip once: SKIP=branch-name" >&2
  exit 1
fi
