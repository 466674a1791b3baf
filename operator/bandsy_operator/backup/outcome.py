"""What the operator makes of finished backup Jobs (pure): the environment's ``backup`` status
and its ``BackupReady`` condition.

A Job's outcome is the JSON its program wrote as its termination message (``job.report``):
``{"verified": true, ...}`` or ``{"verified": false, "error": ...}``. Only a verified backup
moves ``lastVerified``; every other end (a failed Job, one whose message is missing) is a
failure, reported with what is known.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..status import FALSE, TRUE, UNKNOWN, ConditionUpdate

BACKUP_READY = "BackupReady"
_VERIFIED_FIELDS = ("taken", "key", "size", "sha256", "tables", "rows", "seconds")


@dataclass(frozen=True)
class FinishedBackup:
    """A backup Job that ended: its name, when, whether it succeeded, its termination message."""

    job: str
    finished_at: str  # RFC 3339
    succeeded: bool
    message: str | None
    job_reason: str | None = None  # the Job controller's, for a Job that failed


def _outcome(message: str | None) -> dict[str, Any]:
    try:
        parsed = json.loads(message or "")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def merge(
    status: Mapping[str, Any],
    finished: Sequence[FinishedBackup],
    existing: Collection[str] | None = None,
) -> dict[str, Any]:
    """``status.environments.<env>.backup`` after these Jobs (oldest first). Jobs it already
    took into account (by name) change nothing, so a resync writes nothing; one that ended
    before the outcome recorded last (listed late) changes nothing either. ``existing``: the
    names of the backup Jobs that still exist, the only ones worth remembering as counted."""
    merged = dict(status)
    seen = set(merged.get("jobs") or [])
    for backup in finished:
        latest = max(
            str((merged.get(key) or {}).get("at", "")) for key in ("lastVerified", "lastFailed")
        )
        if backup.job in seen or backup.finished_at < latest:
            seen.add(backup.job)
            continue
        outcome = _outcome(backup.message)
        if backup.succeeded and outcome.get("verified") is True:
            merged["lastVerified"] = {
                "job": backup.job,
                "at": backup.finished_at,
                **{k: outcome[k] for k in _VERIFIED_FIELDS if k in outcome},
            }
            listed = outcome.get("verifiedBackups")
            if isinstance(listed, list):
                merged["verified"] = [str(t) for t in listed]
        else:
            reason = str(
                outcome.get("error") or backup.job_reason or "the Job failed without saying why"
            )
            if backup.succeeded:
                reason = "the Job succeeded but reported no verified backup"
            merged["lastFailed"] = {"job": backup.job, "at": backup.finished_at, "reason": reason}
        seen.add(backup.job)
    # The CronJob keeps the last few Jobs, so this stays short.
    merged["jobs"] = sorted(seen if existing is None else seen & set(existing))
    return merged


def condition(backup: Mapping[str, Any], schedule: str) -> ConditionUpdate:
    """BackupReady: True while the newest finished backup was verified."""
    verified = backup.get("lastVerified") or {}
    failed = backup.get("lastFailed") or {}
    if failed and str(failed.get("at", "")) >= str(verified.get("at", "")):
        return ConditionUpdate(
            BACKUP_READY,
            FALSE,
            "BackupFailed",
            f"the backup of {failed.get('at')} failed (Job {failed.get('job')}): "
            f"{failed.get('reason')}; nothing was deleted"
            + (f"; the last verified one is {verified.get('taken')}" if verified else ""),
        )
    if verified:
        return ConditionUpdate(
            BACKUP_READY,
            TRUE,
            "BackupVerified",
            f"{verified.get('taken')} restored and checked ({verified.get('rows', '?')} rows in "
            f"{verified.get('tables', '?')} tables, {verified.get('size', '?')} bytes)",
        )
    return ConditionUpdate(
        BACKUP_READY,
        UNKNOWN,
        "AwaitingFirstBackup",
        f"no backup has finished yet (schedule {schedule!r})",
    )
