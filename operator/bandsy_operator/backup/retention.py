"""Which backup objects to delete (pure): only ever after a newer verified backup exists."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass

from .manifest import DUMP_SUFFIX, MANIFEST_SUFFIX, parse_stamp, stamp_of


@dataclass(frozen=True)
class Retention:
    """Keep the newest ``count`` verified backups; beyond those, keep the ones younger than
    ``days`` (None: count alone decides)."""

    count: int
    days: int | None = None


def expired(keys: Iterable[str], retention: Retention, now: datetime.datetime) -> list[str]:
    """The keys to delete among one service's backup objects.

    A backup is verified when its manifest exists. The newest verified one is never deleted,
    whatever the settings; a dump without a manifest (its verify failed, or it is being
    verified right now) goes only once a newer verified backup exists.
    """
    by_stamp: dict[str, set[str]] = {}
    for key in keys:
        if (taken := stamp_of(key)) is not None:
            by_stamp.setdefault(taken, set()).add(key)
    verified = sorted(
        (t for t, found in by_stamp.items() if any(k.endswith(MANIFEST_SUFFIX) for k in found)),
        reverse=True,
    )
    if not verified:
        return []
    newest = verified[0]
    keep = set(verified[: max(retention.count, 1)])
    if retention.days is not None:
        horizon = now - datetime.timedelta(days=retention.days)
        keep |= {t for t in verified if parse_stamp(t) >= horizon}
    doomed = [t for t in verified if t not in keep]
    doomed += [
        t
        for t, found in by_stamp.items()
        if t < newest and not any(k.endswith(MANIFEST_SUFFIX) for k in found)
    ]
    # The manifest before its dump: the backup stops counting first, so a crash in between
    # leaves a dump without a manifest (which a later run deletes), never a manifest that
    # promises a dump that is gone.
    ordered = []
    for taken in sorted(doomed):
        found = by_stamp[taken]
        ordered += sorted(k for k in found if not k.endswith(DUMP_SUFFIX))
        ordered += sorted(k for k in found if k.endswith(DUMP_SUFFIX))
    return ordered
