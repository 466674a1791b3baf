"""Branch protection as code: the GitHub repository rulesets of SPEC §2's merge rules.

Pure builders: the bodies of ``POST /repos/{owner}/{repo}/rulesets`` (REST API, "Create a
repository ruleset": https://docs.github.com/en/rest/repos/rules) and the requests that bring a
repository's rulesets to them. Reading workflow files and calling ``gh`` live in github_apply.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from .branches import PROTECTED, required_reviews

# The GitHub Actions app: a required check names it so that only an Actions run can satisfy it,
# not a commit status anyone with write access could post under the same name.
GITHUB_ACTIONS_APP_ID = 15368
# Rebase merges made by GitHub cannot be signed; merge and squash commits are (web-flow key).
MERGE_METHODS = ("merge", "squash")
RULESET_SUFFIX = " (bandsyctl github-rules)"
SOURCE_CHECK = "bandsyctl check-branch"


class UnsupportedJobError(ValueError):
    """A pull-request job whose check name cannot be known from the file alone."""


@dataclass(frozen=True)
class Checks:
    """The check names of the jobs every pull request into a branch runs, and what was left out."""

    contexts: tuple[str, ...]
    left_out: tuple[str, ...] = field(default=())
    # Whether one of them runs the merge-source check (GitHub has no rule for it).
    checks_sources: bool = False


def ruleset_name(target: str) -> str:
    return f"{target}{RULESET_SUFFIX}"


def _pull_request_trigger(workflow: Mapping[Any, Any]) -> Mapping[str, Any] | None:
    """The workflow's ``pull_request`` filters ({} when unfiltered), None without that trigger."""
    # YAML 1.1 (PyYAML) reads the key `on` as True.
    triggers = workflow.get("on", workflow.get(True))
    if triggers == "pull_request" or (isinstance(triggers, list) and "pull_request" in triggers):
        return {}
    if isinstance(triggers, Mapping) and "pull_request" in triggers:
        return triggers["pull_request"] or {}
    return None


def _runs_for(filters: Mapping[str, Any], target: str) -> bool:
    if "branches" in filters:
        return any(fnmatchcase(target, pattern) for pattern in filters["branches"])
    return not any(fnmatchcase(target, pattern) for pattern in filters.get("branches-ignore", []))


def _runs_source_check(job: Mapping[str, Any]) -> bool:
    return any(
        SOURCE_CHECK in str(step.get("run", "")) and "--into" in str(step.get("run", ""))
        for step in job.get("steps") or []
    )


def pull_request_checks(workflows: Mapping[str, Mapping[Any, Any]], target: str) -> Checks:
    """Check names (a job's ``name:``, else its id) of the jobs that run on every pull request
    into ``target``. Jobs with an ``if:`` are left out: skipped, they would report success and
    guard nothing. Reusable-workflow calls are left out too: their checks are named after the
    called workflow's jobs, which this file does not show."""
    contexts: list[str] = []
    left_out: list[str] = []
    checks_sources = False
    for path, workflow in sorted(workflows.items()):
        filters = _pull_request_trigger(workflow)
        if filters is None or not _runs_for(filters, target):
            continue
        for job_id, job in (workflow.get("jobs") or {}).items():
            where = f"{path}: job {job_id}"
            if "if" in job:
                left_out.append(f"{where} (runs only if {job['if']})")
                continue
            if "uses" in job:
                left_out.append(f"{where} (calls {job['uses']}: add its jobs' checks by hand)")
                continue
            if "matrix" in (job.get("strategy") or {}):
                raise UnsupportedJobError(f"{where}: a matrix job reports one check per entry")
            context = str(job.get("name", job_id))
            if "${{" in context:
                raise UnsupportedJobError(f"{where}: its name {context!r} is an expression")
            contexts.append(context)
            checks_sources = checks_sources or _runs_source_check(job)
    return Checks(tuple(dict.fromkeys(contexts)), tuple(left_out), checks_sources)


def ruleset(target: str, checks: Sequence[str]) -> dict[str, Any]:
    """The ruleset of one protected branch: SPEC §2's merge rules, for admins too. Which
    branches may be merged in (master <- release/*, hotfix/*) has no rule of its own in GitHub:
    it is a required check, the CI job running `bandsyctl check-branch HEAD --into BASE`."""
    rules: list[dict[str, Any]] = [
        # No direct push: no deletion, no force push, and (pull_request) no commit that did not
        # come through a pull request.
        {"type": "deletion"},
        {"type": "non_fast_forward"},
        {"type": "required_signatures"},
        {
            "type": "pull_request",
            "parameters": {
                "required_approving_review_count": required_reviews(target),
                # A push after the approvals needs new ones: the reviews cover what merges.
                "dismiss_stale_reviews_on_push": True,
                "require_code_owner_review": False,
                "require_last_push_approval": False,
                "required_review_thread_resolution": False,
                "allowed_merge_methods": list(MERGE_METHODS),
            },
        },
    ]
    if checks:
        rules.append(
            {
                "type": "required_status_checks",
                "parameters": {
                    # Up to date with the target: the checks ran on what the merge produces.
                    "strict_required_status_checks_policy": True,
                    "do_not_enforce_on_create": False,
                    "required_status_checks": [
                        {"context": context, "integration_id": GITHUB_ACTIONS_APP_ID}
                        for context in checks
                    ],
                },
            }
        )
    return {
        "name": ruleset_name(target),
        "target": "branch",
        "enforcement": "active",
        # Nobody bypasses, repository admins included.
        "bypass_actors": [],
        "conditions": {"ref_name": {"include": [f"refs/heads/{target}"], "exclude": []}},
        "rules": rules,
    }


def rulesets(
    workflows: Mapping[str, Mapping[Any, Any]],
) -> tuple[list[dict[str, Any]], list[str]]:
    """A ruleset per protected branch, and warnings: jobs left out of the required checks, and
    branches whose merge sources no required check enforces."""
    bodies = []
    warnings: list[str] = []
    for target in PROTECTED:
        checks = pull_request_checks(workflows, target)
        bodies.append(ruleset(target, checks.contexts))
        warnings.extend(f"note: not a required check: {job}" for job in checks.left_out)
        if not checks.checks_sources:
            warnings.append(
                f"warning: no required check of {target} runs `{SOURCE_CHECK} ... --into`: "
                "pull requests from any branch may be merged into it"
            )
    return bodies, list(dict.fromkeys(warnings))


@dataclass(frozen=True)
class Request:
    """One ``gh api`` call: method, path, JSON body (None for none)."""

    method: str
    path: str
    body: Mapping[str, Any] | None = None


def list_request(repo: str) -> Request:
    # includes_parents=false: only this repository's own rulesets can be updated here.
    return Request("GET", f"repos/{repo}/rulesets?includes_parents=false&per_page=100")


def plan(
    repo: str, existing: Iterable[Mapping[str, Any]], desired: Iterable[Mapping[str, Any]]
) -> list[Request]:
    """Create each desired ruleset, or update (PUT, the whole body) the one of the same name."""
    ids = {
        str(found["name"]): int(found["id"])
        for found in existing
        if found.get("source_type", "Repository") == "Repository"
    }
    requests = []
    for body in desired:
        ruleset_id = ids.get(str(body["name"]))
        if ruleset_id is None:
            requests.append(Request("POST", f"repos/{repo}/rulesets", body))
        else:
            requests.append(Request("PUT", f"repos/{repo}/rulesets/{ruleset_id}", body))
    return requests
