"""The Jobs the operator runs for services (SPEC §11: migrations, backups, restores, mirrors),
pure: how a Job ended, and which watch events about them are news."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .constants import BACKUP_LABEL, MIGRATION_LABEL, MIRROR_LABEL, RESTORE_LABEL

# The label on each kind of Job the operator runs for a service: its value is the service.
SERVICE_JOB_LABELS = (MIGRATION_LABEL, BACKUP_LABEL, RESTORE_LABEL, MIRROR_LABEL)


class JobPhase(StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class JobEnd:
    """Running until the Job controller marks it Complete or Failed (a retry after a failed
    attempt, within backoffLimit, is still running). ``reason``: why it failed."""

    phase: JobPhase
    started_at: datetime.datetime | None = None
    finished_at: datetime.datetime | None = None
    reason: str | None = None


def parse_time(value: Any) -> datetime.datetime | None:
    if not value:
        return None
    moment = datetime.datetime.fromisoformat(str(value))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


def _condition(job: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    conditions = (job.get("status") or {}).get("conditions") or []
    return next(
        (c for c in conditions if c.get("type") == type_ and c.get("status") == "True"), None
    )


def job_end(job: Mapping[str, Any]) -> JobEnd:
    status = job.get("status") or {}
    started = parse_time(status.get("startTime"))
    if (complete := _condition(job, "Complete")) is not None:
        done = parse_time(status.get("completionTime")) or parse_time(
            complete.get("lastTransitionTime")
        )
        return JobEnd(JobPhase.SUCCEEDED, started, done)
    if (failed := _condition(job, "Failed")) is not None:
        reason = str(failed.get("reason") or "Failed")
        detail = failed.get("message") or ""
        return JobEnd(
            JobPhase.FAILED,
            started,
            parse_time(failed.get("lastTransitionTime")),
            f"{reason}: {detail}" if detail else reason,
        )
    return JobEnd(JobPhase.RUNNING, started)


@dataclass(frozen=True)
class JobNews:
    """A Job of a service ended (or was deleted): reconcile the service."""

    service: str
    namespace: str
    backup: bool  # a backup Job (its outcome goes into status); else a migration, restore, mirror


def job_news(event_type: str | None, job: Mapping[str, Any]) -> JobNews | None:
    """News when a migration, backup or restore Job finished, or was deleted (which runs a failed
    migration again). Its progress in between is no news."""
    meta = job.get("metadata", {})
    labels = meta.get("labels") or {}
    service = next((labels[k] for k in SERVICE_JOB_LABELS if labels.get(k)), None)
    if not service:
        return None
    if event_type == "DELETED" or job_end(job).phase is not JobPhase.RUNNING:
        return JobNews(str(service), str(meta.get("namespace", "")), BACKUP_LABEL in labels)
    return None
