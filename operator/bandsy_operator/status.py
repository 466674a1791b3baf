"""Pure status computation: conditions with transition times, summaries, Deployment readiness."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Condition = dict[str, Any]

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"
NOT_DEPLOYED = "-"
SUSPENDED = "(suspended)"


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ConditionUpdate:
    type: str
    status: str
    reason: str
    message: str = ""


def merge_conditions(
    previous: Sequence[Condition],
    updates: Sequence[ConditionUpdate],
    generation: int,
    now: str,
) -> list[Condition]:
    """Set ``updates`` over ``previous``; lastTransitionTime only moves when status changes.
    Conditions not in ``updates`` are dropped: every reconcile states all it knows."""
    old = {c["type"]: c for c in previous}
    merged = []
    for update in updates:
        before = old.get(update.type)
        changed = before is None or before.get("status") != update.status
        merged.append(
            {
                "type": update.type,
                "status": update.status,
                "reason": update.reason,
                "message": update.message,
                "observedGeneration": generation,
                "lastTransitionTime": now if changed else before["lastTransitionTime"],  # type: ignore[index]
            }
        )
    return merged


def transitions(previous: Sequence[Condition], current: Sequence[Condition]) -> list[Condition]:
    """Conditions whose status or reason changed: each deserves one Event, not every tick."""
    old = {c["type"]: (c.get("status"), c.get("reason")) for c in previous}
    return [c for c in current if old.get(c["type"]) != (c["status"], c["reason"])]


@dataclass(frozen=True)
class Rollout:
    """What a Deployment reports about the tag it runs."""

    replicas: int
    available_replicas: int
    ready: bool


def deployment_rollout(deployment: Mapping[str, Any] | None) -> Rollout:
    """Ready = the controller saw the latest spec, at least one replica is asked for, and every
    replica is updated and available (SPEC §6): an environment scaled to zero runs nothing."""
    if deployment is None:
        return Rollout(0, 0, False)
    spec_replicas = int(deployment.get("spec", {}).get("replicas", 1))
    status = deployment.get("status") or {}
    generation = int(deployment.get("metadata", {}).get("generation", 0))
    available = int(status.get("availableReplicas", 0))
    updated = int(status.get("updatedReplicas", 0))
    total = int(status.get("replicas", 0))
    observed = int(status.get("observedGeneration", 0)) >= generation
    ready = spec_replicas > 0 and observed
    ready = ready and updated >= spec_replicas and available >= spec_replicas
    ready = ready and total <= spec_replicas  # old pods gone
    return Rollout(spec_replicas, available, ready)


def summary(
    applied: str | None,
    ready: str | None,
    *,
    rolling_from: str | None = None,
    blocked: str | None = None,
) -> str:
    """SPEC §3.2 vocabulary: converged ``tag``, rolling ``old -> new`` (``rolling_from``: what ran
    before, ``(none)`` for a first rollout), ``tag (blocked)``; and ``tag (not ready)`` for a tag
    that was Ready and is no longer (crash loop, scaled to zero, a stuck rollout)."""
    if blocked is not None:
        return f"{blocked} (blocked)"
    if applied is None:
        return NOT_DEPLOYED
    if ready == applied:
        return applied
    if rolling_from is not None:
        return f"{rolling_from} -> {applied}"
    return f"{applied} (not ready)"
