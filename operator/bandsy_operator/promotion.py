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

from .constants import (
    PROMOTED_AT_ANNOTATION_PREFIX,
    PROMOTED_BY_ANNOTATION_PREFIX,
    SKIP_GATES_ANNOTATION,
    SKIP_GATES_AT_ANNOTATION,
)

HISTORY_LIMIT = 10
_RFC3339 = "%Y-%m-%dT%H:%M:%SZ"
# Break glass (SPEC §10) is honoured this long after it was set.
SKIP_GATES_LIFETIME = datetime.timedelta(hours=1)
# A stamp later than now by more than this is not believed (a request can write its own
# managedFields times, which the API server's stamps are taken from).
CLOCK_SKEW = datetime.timedelta(minutes=1)


class GateReason(StrEnum):
    """``PromotionBlocked`` condition reasons, one per gate."""

    TAG_POLICY_VIOLATION = "TagPolicyViolation"
    NOT_READY_UPSTREAM = "NotReadyUpstream"
    SOAK_TIME_NOT_ELAPSED = "SoakTimeNotElapsed"
    ENVIRONMENT_FROZEN = "EnvironmentFrozen"
    NOT_MIGRATED_UPSTREAM = "NotMigratedUpstream"
    # Not gates of a promotion but steps of the rollout it allowed (SPEC §11): the Deployment
    # keeps the old image while the new one's migration runs, or after it failed.
    MIGRATING = "Migrating"
    MIGRATION_FAILED = "MigrationFailed"


@dataclass(frozen=True, order=True)
class Image:
    """What a promotion moves: a repository and a tag (a change of either is a promotion)."""

    repository: str
    tag: str

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}"

    @classmethod
    def parse(cls, reference: str) -> Image | None:
        """``repo[:port]/name:tag``; None without a tag."""
        repository, _, tag = reference.rpartition(":")
        if not repository or not tag or "/" in tag:
            return None
        return cls(repository, tag)


@dataclass(frozen=True)
class Readiness:
    """What an environment runs Ready *now*, and since when without interruption (the soak
    gate counts from there). ``ready`` is None while nothing is Ready there."""

    ready: Image | None = None
    since: datetime.datetime | None = None


def carry_readiness(
    ready_now: Image | None, before: Readiness, now: datetime.datetime
) -> Readiness:
    """Readiness after an observation: it continues while the same image stays Ready; an image
    that stopped being Ready, even for a moment that was observed, starts its soak again."""
    if ready_now is None:
        return Readiness()
    if before.ready == ready_now and before.since is not None:
        return before
    return Readiness(ready_now, now)


@dataclass(frozen=True)
class GateInput:
    """Everything a verdict depends on; ``current`` is None before the first deployment."""

    desired: Image
    current: Image | None
    tag_pattern: str | None
    frozen: bool
    promotion_from: str | None
    soak_seconds: int
    upstream: Readiness | None  # None: the service is not in the upstream environment
    skip_gates_tag: str | None
    now: datetime.datetime
    # With migrations: whether ``desired`` migrated in the upstream environment; None without.
    migrated_upstream: bool | None = None

    @property
    def shown(self) -> str:
        """The desired image as people name it: its tag, unless the repository changes too."""
        same = self.current is None or self.current.repository == self.desired.repository
        return self.desired.tag if same else str(self.desired)


@dataclass(frozen=True)
class GateVerdict:
    """``retry_after``: seconds until the verdict may change by itself (a timer can requeue);
    None when no timer helps: a human edit, or an upstream status change the caller watches.
    ``image_to_apply``: the desired image, or what runs when blocked (None before a first
    rollout)."""

    allowed: bool
    image_to_apply: Image | None
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
        image_to_apply=gate.current,
        reason=reason,
        message=message,
        retry_after=retry_after,
    )


def _tag_policy(gate: GateInput) -> GateVerdict | None:
    if gate.tag_pattern is None:
        return None
    tag = gate.desired.tag
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
    shown, upstream = gate.shown, gate.upstream
    if upstream is None or upstream.ready != gate.desired:
        if upstream is None:
            running = "the service is not deployed there"
        elif upstream.ready is None:
            running = "nothing is Ready there now"
        else:
            running = f"it runs {_name(upstream.ready, gate.desired)} Ready"
        return _blocked(
            gate,
            GateReason.NOT_READY_UPSTREAM,
            f"{shown} is not Ready in {source} ({running}); "
            f"it will be promoted once {source} runs {shown} Ready",
        )
    if gate.migrated_upstream is False:
        return _blocked(
            gate,
            GateReason.NOT_MIGRATED_UPSTREAM,
            f"{shown} runs Ready in {source} but never migrated there (SPEC §11); "
            f"promote a tag that migrated in {source} first",
        )
    required = max(gate.soak_seconds, 0)
    if required == 0:
        return None
    if upstream.since is None:
        # Inconsistent upstream status; recheck after a full soak rather than never.
        return _blocked(
            gate,
            GateReason.SOAK_TIME_NOT_ELAPSED,
            f"{shown} is Ready in {source} since an unknown time; the required soak is "
            f"{required} s",
            retry_after=float(required),
        )
    now, since = _utc(gate.now), _utc(upstream.since)
    remaining = (since + datetime.timedelta(seconds=required) - now).total_seconds()
    if remaining <= 0:
        return None
    elapsed = max((now - since).total_seconds(), 0.0)
    return _blocked(
        gate,
        GateReason.SOAK_TIME_NOT_ELAPSED,
        f"{shown} has been Ready in {source} for {math.floor(elapsed)} s of the required "
        f"{required} s without interruption; it will be promoted in {math.ceil(remaining)} s",
        retry_after=remaining,
    )


def _name(image: Image, reference: Image) -> str:
    return image.tag if image.repository == reference.repository else str(image)


def evaluate(gate: GateInput) -> GateVerdict:
    """Whether ``desired`` may be applied; a blocked image leaves ``current`` running.

    Gates run in a fixed order (freeze, tag policy, upstream Ready, soak) and the first failure is
    reported, so the message names the one thing to fix first.
    """
    shown = gate.shown
    if gate.desired == gate.current:
        # Never take down what already runs, even if a freeze or a new pattern came later.
        return GateVerdict(True, gate.desired, None, f"{shown} is already applied")
    if gate.skip_gates_tag == gate.desired.tag:
        return GateVerdict(
            True,
            gate.desired,
            None,
            f"{shown}: gates skipped by annotation {SKIP_GATES_ANNOTATION}",
            gates_skipped=True,
        )
    if gate.frozen:
        return _blocked(
            gate,
            GateReason.ENVIRONMENT_FROZEN,
            f"the environment is frozen (promotion.freeze); {shown} will be applied "
            "once the freeze is lifted",
        )
    verdict = _tag_policy(gate)
    if verdict is None and gate.promotion_from is not None:
        verdict = _upstream(gate, gate.promotion_from)
    return verdict or GateVerdict(True, gate.desired, None, f"{shown} passed all promotion gates")


@dataclass(frozen=True)
class Promoter:
    """Who last promoted an environment of a service, and when: the API server's stamps
    ``bandsy.app/promoted-by.<env>`` and ``promoted-at.<env>`` (None where absent)."""

    by: str | None = None
    at: datetime.datetime | None = None

    @classmethod
    def of(cls, annotations: Mapping[str, str], env: str) -> Promoter:
        return cls(
            annotations.get(PROMOTED_BY_ANNOTATION_PREFIX + env) or None,
            _stamp(annotations, PROMOTED_AT_ANNOTATION_PREFIX + env),
        )


def _stamp(annotations: Mapping[str, str], key: str) -> datetime.datetime | None:
    """A time the API server stamped; None when absent or unreadable (unknown, not an error)."""
    try:
        return _parse_time(value) if (value := annotations.get(key)) else None
    except ValueError:
        return None


def skip_gates_tag(
    annotations: Mapping[str, str],
    env: str,
    history: Sequence[Rollout],
    now: datetime.datetime,
) -> str | None:
    """The tag that may skip ``env``'s gates now, from ``bandsy.app/skip-gates: "<env>=<tag>"``.

    Break glass is for one rollout and expires: the API server stamps when it was set
    (``bandsy.app/skip-gates-at``); it is honoured for SKIP_GATES_LIFETIME from then, and
    ignored once that tag ran Ready in ``env`` since then. Without a believable stamp it cannot
    be dated, so it is ignored.
    """
    target, separator, tag = annotations.get(SKIP_GATES_ANNOTATION, "").partition("=")
    if not separator or target != env or not tag:
        return None
    since = _stamp(annotations, SKIP_GATES_AT_ANNOTATION)
    now = _utc(now)
    if since is None or not now - SKIP_GATES_LIFETIME < since <= now + CLOCK_SKEW:
        return None
    ran_ready = any(
        entry.tag == tag and entry.ready_at is not None and entry.ready_at >= since
        for entry in history
    )
    return None if ran_ready else tag


def default_promotion_tag(upstream: Readiness | None) -> str | None:
    """What ``bandsyctl promote`` proposes without ``--tag``: the tag Ready upstream now."""
    return upstream.ready.tag if upstream is not None and upstream.ready is not None else None


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
    image: str | None = None  # repository:tag (older entries have the tag only)
    promoted_by: str | None = None
    promoted_at: datetime.datetime | None = None
    migration_seconds: int | None = None

    def to_status(self) -> dict[str, Any]:
        """camelCase with RFC3339 UTC times; None values are omitted to keep status small."""
        fields: dict[str, Any] = {
            "tag": self.tag,
            "image": self.image,
            "appliedAt": _format_time(self.applied_at),
            "readyAt": _format_time(self.ready_at) if self.ready_at is not None else None,
            "changeCause": self.change_cause,
            "gatesSkipped": self.gates_skipped,
            "promotedBy": self.promoted_by,
            "promotedAt": _format_time(self.promoted_at) if self.promoted_at else None,
            "migrationSeconds": self.migration_seconds,
        }
        return {key: value for key, value in fields.items() if value is not None}

    @classmethod
    def from_status(cls, entry: Mapping[str, Any]) -> Rollout:
        ready_at, promoted_at = entry.get("readyAt"), entry.get("promotedAt")
        return cls(
            tag=str(entry["tag"]),
            applied_at=_parse_time(str(entry["appliedAt"])),
            ready_at=_parse_time(str(ready_at)) if ready_at else None,
            change_cause=str(cause) if (cause := entry.get("changeCause")) is not None else None,
            gates_skipped=bool(entry.get("gatesSkipped", False)),
            image=str(image) if (image := entry.get("image")) else None,
            promoted_by=str(by) if (by := entry.get("promotedBy")) else None,
            promoted_at=_parse_time(str(promoted_at)) if promoted_at else None,
            migration_seconds=(
                int(seconds) if (seconds := entry.get("migrationSeconds")) is not None else None
            ),
        )

    @classmethod
    def history(cls, env_status: Mapping[str, Any]) -> list[Rollout]:
        """``status.environments.<env>.history``, newest first."""
        return [cls.from_status(entry) for entry in env_status.get("history") or []]


def record_rollout(
    history: Sequence[Rollout], rollout: Rollout, limit: int = HISTORY_LIMIT
) -> list[Rollout]:
    """Newest first, capped at ``limit`` so status stays bounded."""
    if limit < 1:
        raise ValueError(f"history limit must be at least 1, got {limit}")
    return [rollout, *history][:limit]


def mark_ready(history: Sequence[Rollout], image: Image, at: datetime.datetime) -> list[Rollout]:
    """Set ``ready_at`` on the newest entry for ``image``; the first Ready time is kept, and older
    entries of the same image (an earlier rollout later rolled back) are left alone."""
    entries = list(history)
    for index, entry in enumerate(entries):
        if entry.image == str(image) or (entry.image is None and entry.tag == image.tag):
            if entry.ready_at is None:
                entries[index] = replace(entry, ready_at=at)
            break
    return entries
