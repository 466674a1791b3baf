"""Pure promotion gates and rollout history (SPEC §6).

No I/O and no clock: the reconciler passes ``now`` so every verdict is reproducible in tests and
``bandsyctl promote --dry-run`` shows exactly what the operator would decide.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from .constants import SKIP_GATES_ANNOTATION

HISTORY_LIMIT = 10
_RFC3339 = "%Y-%m-%dT%H:%M:%SZ"


class GateReason(StrEnum):
    """``PromotionBlocked`` condition reasons, one per gate."""

    TAG_POLICY_VIOLATION = "TagPolicyViolation"
    NOT_READY_UPSTREAM = "NotReadyUpstream"
    SOAK_TIME_NOT_ELAPSED = "SoakTimeNotElapsed"
    ENVIRONMENT_FROZEN = "EnvironmentFrozen"


@dataclass(frozen=True)
class UpstreamState:
    """What the upstream environment runs Ready, and since when (for the soak gate)."""

    ready_tag: str | None
    ready_since: datetime.datetime | None


@dataclass(frozen=True)
class GateInput:
    """Everything a verdict depends on; ``current_tag`` is None before the first deployment."""

    desired_tag: str
    current_tag: str | None
    tag_pattern: str | None
    frozen: bool
    promotion_from: str | None
    soak_seconds: int
    upstream: UpstreamState | None
    skip_gates_tag: str | None
    now: datetime.datetime


@dataclass(frozen=True)
class GateVerdict:
    """``retry_after``: seconds until the verdict may change by itself (a timer can requeue);
    None when no timer helps: a human edit, or an upstream status change the caller watches."""

    allowed: bool
    tag_to_apply: str | None
    reason: GateReason | None
    message: str
    gates_skipped: bool = False
    retry_after: float | None = None


def _utc(moment: datetime.datetime) -> datetime.datetime:
    """Naive datetimes are taken as UTC so mixing them with aware ones never raises."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC)


def _blocked(
    gate: GateInput, reason: GateReason, message: str, retry_after: float | None = None
) -> GateVerdict:
    return GateVerdict(
        allowed=False,
        tag_to_apply=gate.current_tag,
        reason=reason,
        message=message,
        retry_after=retry_after,
    )


def _tag_policy(gate: GateInput) -> GateVerdict | None:
    if gate.tag_pattern is None:
        return None
    tag = gate.desired_tag
    try:
        matches = re.search(gate.tag_pattern, tag) is not None
    except re.error as error:
        # A bad pattern must block, not crash the reconciler: no tag can be proven to comply.
        return _blocked(
            gate,
            GateReason.TAG_POLICY_VIOLATION,
            f"imagePolicy.tagPattern {gate.tag_pattern!r} is not a valid regular expression "
            f"({error}); {tag} is held until the pattern is fixed",
        )
    if matches:
        return None
    return _blocked(
        gate,
        GateReason.TAG_POLICY_VIOLATION,
        f"{tag} does not match imagePolicy.tagPattern {gate.tag_pattern!r}; "
        "deploy a tag that matches or change the pattern",
    )


def _upstream(gate: GateInput, source: str) -> GateVerdict | None:
    tag, upstream = gate.desired_tag, gate.upstream
    if upstream is None or upstream.ready_tag != tag:
        running = (
            f"it runs {upstream.ready_tag} Ready"
            if upstream is not None and upstream.ready_tag
            else "nothing is Ready there"
        )
        return _blocked(
            gate,
            GateReason.NOT_READY_UPSTREAM,
            f"{tag} is not Ready in {source} ({running}); "
            f"it will be promoted once {source} runs {tag} Ready",
        )
    required = max(gate.soak_seconds, 0)
    if required == 0:
        return None
    if upstream.ready_since is None:
        # Inconsistent upstream status; recheck after a full soak rather than never.
        return _blocked(
            gate,
            GateReason.SOAK_TIME_NOT_ELAPSED,
            f"{tag} is Ready in {source} since an unknown time; the required soak is {required} s",
            retry_after=float(required),
        )
    now, since = _utc(gate.now), _utc(upstream.ready_since)
    remaining = (since + datetime.timedelta(seconds=required) - now).total_seconds()
    if remaining <= 0:
        return None
    elapsed = max((now - since).total_seconds(), 0.0)
    return _blocked(
        gate,
        GateReason.SOAK_TIME_NOT_ELAPSED,
        f"{tag} has been Ready in {source} for {math.floor(elapsed)} s of the required "
        f"{required} s; it will be promoted in {math.ceil(remaining)} s",
        retry_after=remaining,
    )


def evaluate(gate: GateInput) -> GateVerdict:
    """Whether ``desired_tag`` may be applied; a blocked tag leaves ``current_tag`` running.

    Gates run in a fixed order (freeze, tag policy, upstream Ready, soak) and the first failure is
    reported, so the message names the one thing to fix first.
    """
    tag = gate.desired_tag
    if tag == gate.current_tag:
        # Never take down what already runs, even if a freeze or a new pattern came later.
        return GateVerdict(True, tag, None, f"{tag} is already applied")
    if gate.skip_gates_tag == tag:
        return GateVerdict(
            True,
            tag,
            None,
            f"{tag}: gates skipped by annotation {SKIP_GATES_ANNOTATION}",
            gates_skipped=True,
        )
    if gate.frozen:
        return _blocked(
            gate,
            GateReason.ENVIRONMENT_FROZEN,
            f"the environment is frozen (promotion.freeze); {tag} will be applied "
            "once the freeze is lifted",
        )
    verdict = _tag_policy(gate)
    if verdict is None and gate.promotion_from is not None:
        verdict = _upstream(gate, gate.promotion_from)
    return verdict or GateVerdict(True, tag, None, f"{tag} passed all promotion gates")


def default_promotion_tag(upstream: UpstreamState | None) -> str | None:
    """What ``bandsyctl promote`` proposes without ``--tag``: the tag Ready upstream."""
    return upstream.ready_tag if upstream is not None else None


def _format_time(moment: datetime.datetime) -> str:
    return _utc(moment).strftime(_RFC3339)


def _parse_time(value: str) -> datetime.datetime:
    return _utc(datetime.datetime.fromisoformat(value))


@dataclass(frozen=True)
class Rollout:
    """One entry of ``status.environments.<env>.history``."""

    tag: str
    applied_at: datetime.datetime
    ready_at: datetime.datetime | None = None
    change_cause: str | None = None
    gates_skipped: bool = False

    def to_status(self) -> dict[str, Any]:
        """camelCase with RFC3339 UTC times; None values are omitted to keep status small."""
        fields: dict[str, Any] = {
            "tag": self.tag,
            "appliedAt": _format_time(self.applied_at),
            "readyAt": _format_time(self.ready_at) if self.ready_at is not None else None,
            "changeCause": self.change_cause,
            "gatesSkipped": self.gates_skipped,
        }
        return {key: value for key, value in fields.items() if value is not None}

    @classmethod
    def from_status(cls, entry: Mapping[str, Any]) -> Rollout:
        ready_at = entry.get("readyAt")
        return cls(
            tag=str(entry["tag"]),
            applied_at=_parse_time(str(entry["appliedAt"])),
            ready_at=_parse_time(str(ready_at)) if ready_at else None,
            change_cause=str(cause) if (cause := entry.get("changeCause")) is not None else None,
            gates_skipped=bool(entry.get("gatesSkipped", False)),
        )


def record_rollout(
    history: Sequence[Rollout], rollout: Rollout, limit: int = HISTORY_LIMIT
) -> list[Rollout]:
    """Newest first, capped at ``limit`` so status stays bounded."""
    if limit < 1:
        raise ValueError(f"history limit must be at least 1, got {limit}")
    return [rollout, *history][:limit]


def mark_ready(history: Sequence[Rollout], tag: str, at: datetime.datetime) -> list[Rollout]:
    """Set ``ready_at`` on the newest entry for ``tag``; the first Ready time is kept, and older
    entries of the same tag (an earlier rollout later rolled back) are left alone."""
    entries = list(history)
    for index, entry in enumerate(entries):
        if entry.tag == tag:
            if entry.ready_at is None:
                entries[index] = replace(entry, ready_at=at)
            break
    return entries
