"""The effects of ``bandsyctl github-rules``: read the workflow files, call the GitHub CLI."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .github_rules import Request, list_request, plan

# gh fills `{owner}/{repo}` in from the git remote of the current directory.
CURRENT_REPO = "{owner}/{repo}"
_REPO = re.compile(r"^[A-Za-z0-9-]+/[A-Za-z0-9._-]+$")
NO_GH = (
    "gh (the GitHub CLI, https://cli.github.com) is not on PATH: nothing was sent. Install it "
    "and `gh auth login`, or send the printed rulesets yourself (POST /repos/OWNER/NAME/rulesets)."
)


class GitHubError(Exception):
    """gh is missing or GitHub refused a request; the message says which."""


def valid_repo(repo: str) -> str:
    if repo != CURRENT_REPO and not _REPO.match(repo):
        raise GitHubError(f"--repo {repo!r}: expected OWNER/NAME")
    return repo


def load_workflows(directory: Path) -> dict[str, Mapping[Any, Any]]:
    """Each workflow file of ``directory`` (``*.yaml``, ``*.yml``), parsed, by file name."""
    if not directory.is_dir():
        raise GitHubError(f"{directory}: no such directory (run from the repository's root)")
    paths = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    return {path.name: yaml.safe_load(path.read_text()) or {} for path in paths}


def gh_api(request: Request) -> Any:
    """Send one request with ``gh api``; its JSON answer (None when empty)."""
    command = ["gh", "api", "--method", request.method, request.path]
    body = None
    if request.body is not None:
        command += ["--input", "-"]
        body = json.dumps(request.body)
    try:
        result = subprocess.run(command, input=body, capture_output=True, text=True)
    except FileNotFoundError as err:
        raise GitHubError(NO_GH) from err
    if result.returncode != 0:
        raise GitHubError(
            f"gh api {request.method} {request.path}: {result.stderr.strip() or result.stdout}"
        )
    return json.loads(result.stdout) if result.stdout.strip() else None


def apply(repo: str, bodies: Sequence[Mapping[str, Any]]) -> list[str]:
    """Create or update (by name) each ruleset of ``repo``; a line per request sent."""
    if shutil.which("gh") is None:
        raise GitHubError(NO_GH)
    existing = gh_api(list_request(repo)) or []
    done = []
    for request in plan(repo, existing, bodies):
        answer = gh_api(request)
        ruleset_id = answer.get("id") if isinstance(answer, Mapping) else None
        name = request.body["name"] if request.body else ""
        verb = "created" if request.method == "POST" else "updated"
        done.append(f"{verb} ruleset {name!r} (id {ruleset_id}) in {repo}")
    return done
