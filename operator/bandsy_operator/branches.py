"""The team's branch model (SPEC §2): which names are valid and what CI/CD does for each."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    TEST = "test"
    BUILD_IMAGE = "build image"
    DEPLOY_DEVELOP = "deploy to develop"


WORK_TYPES = ("hotfix", "release", "bug", "feature")
_WORK_BRANCH = re.compile(
    r"^(?P<type>[a-z]+)/(?P<ticket>[1-9][0-9]*)_(?P<description>[a-z0-9]+(?:-[a-z0-9]+)*)$"
)


@dataclass(frozen=True)
class BranchPolicy:
    name: str
    kind: str  # "master", "develop", one of WORK_TYPES
    on_push: tuple[Action, ...]
    on_pull_request: tuple[Action, ...] = ()
    merges_into: str | None = None
    required_reviews: int = 0
    ticket: int | None = None

    def describe(self) -> str:
        lines = [f"{self.name}: valid {self.kind} branch"]
        if self.ticket is not None:
            lines.append(f"  ticket: #{self.ticket}")
        if self.on_pull_request:
            lines.append(f"  pull request: {', '.join(self.on_pull_request)}")
        verb = "merge" if self.kind in ("master", "develop") else "push"
        lines.append(f"  {verb}: {', '.join(self.on_push)}")
        if self.merges_into:
            lines.append(
                f"  merges into {self.merges_into} after {self.required_reviews} review(s), "
                "signed commits, passing checks"
            )
        return "\n".join(lines)


class InvalidBranchNameError(ValueError):
    """The name does not follow SPEC §2; CI/CD ignores it and it must not be merged."""


class ForbiddenMergeError(ValueError):
    """A valid branch whose pull request targets a branch it may not be merged into."""


_LONG_LIVED = {
    "master": BranchPolicy(
        "master", "master", (Action.TEST, Action.BUILD_IMAGE), on_pull_request=(Action.TEST,)
    ),
    "develop": BranchPolicy(
        "develop",
        "develop",
        (Action.TEST, Action.BUILD_IMAGE, Action.DEPLOY_DEVELOP),
        on_pull_request=(Action.TEST,),
    ),
}
_WORK_ACTIONS: dict[str, tuple[tuple[Action, ...], str, int]] = {
    "release": ((Action.TEST, Action.BUILD_IMAGE), "master", 2),
    "hotfix": ((Action.TEST,), "master", 2),
    "bug": ((Action.TEST,), "develop", 1),
    "feature": ((Action.TEST,), "develop", 1),
}


def classify(name: str) -> BranchPolicy:
    """The CI/CD policy of a branch, or InvalidBranchNameError explaining what is wrong."""
    if name in _LONG_LIVED:
        return _LONG_LIVED[name]
    if name != name.lower():
        raise InvalidBranchNameError(f"{name!r}: branch names are lowercase")
    match = _WORK_BRANCH.match(name)
    if match is None:
        raise InvalidBranchNameError(
            f"{name!r}: expected master, develop or <type>/<ticket>_<short-description> "
            f"with <type> one of {', '.join(WORK_TYPES)}, e.g. feature/123_add-login"
        )
    kind = match["type"]
    if kind not in _WORK_ACTIONS:
        raise InvalidBranchNameError(
            f"{name!r}: type {kind!r} is not one of {', '.join(WORK_TYPES)}"
        )
    on_push, target, reviews = _WORK_ACTIONS[kind]
    return BranchPolicy(
        name,
        kind,
        on_push,
        merges_into=target,
        required_reviews=reviews,
        ticket=int(match["ticket"]),
    )


# The branches pull requests merge into; GitHub rulesets protect them (github_rules.py).
PROTECTED = tuple(_LONG_LIVED)


def merge_sources(target: str) -> tuple[str, ...]:
    """The work types whose branches may be merged into ``target`` (SPEC §2)."""
    return tuple(kind for kind in WORK_TYPES if _WORK_ACTIONS[kind][1] == target)


def required_reviews(target: str) -> int:
    """Approving reviews a pull request into ``target`` needs (the strictest of its sources)."""
    return max((_WORK_ACTIONS[kind][2] for kind in merge_sources(target)), default=0)


def check_merge(source: str, target: str) -> BranchPolicy:
    """The policy of ``source`` when it may be merged into ``target``, else an error saying why."""
    policy = classify(source)
    if policy.merges_into != target:
        allowed = ", ".join(f"{kind}/*" for kind in merge_sources(target)) or "nothing"
        raise ForbiddenMergeError(
            f"{source!r} must not be merged into {target!r} (SPEC §2: {target} <- {allowed})"
        )
    return policy
