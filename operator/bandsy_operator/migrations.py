"""Migrations before a rollout (SPEC §11), pure: what a migration Job's state means, what an
environment's status remembers of its migrations, and log redaction.

The record in ``status.environments.<env>.migrations`` is what says an image migrated there: it
outlives the Job. The Job (named after the image) bridges a restart between its start and that
record, so an image is never migrated twice in one environment.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .jobs import job_end, parse_time

MIGRATIONS_LIMIT = 10
# The end of a failed migration's log that its status shows.
LOG_TAIL_LINES = 20
LOG_TAIL_CHARACTERS = 2000
REDACTED = "[redacted]"
_RFC3339 = "%Y-%m-%dT%H:%M:%SZ"


class MigrationState(StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class Migration:
    """One migration of one image in one environment."""

    image: str
    job: str
    state: MigrationState
    started_at: datetime.datetime | None = None
    completed_at: datetime.datetime | None = None
    message: str | None = None

    @property
    def duration_seconds(self) -> int | None:
        if self.started_at is None or self.completed_at is None:
            return None
        return max(round((self.completed_at - self.started_at).total_seconds()), 0)

    def to_status(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "image": self.image,
            "job": self.job,
            "state": str(self.state),
            "startedAt": _format(self.started_at),
            "completedAt": _format(self.completed_at),
            "durationSeconds": self.duration_seconds,
            "message": self.message,
        }
        return {key: value for key, value in fields.items() if value is not None}

    @classmethod
    def from_status(cls, entry: Mapping[str, Any]) -> Migration:
        return cls(
            image=str(entry["image"]),
            job=str(entry.get("job", "")),
            state=MigrationState(entry["state"]),
            started_at=parse_time(entry.get("startedAt")),
            completed_at=parse_time(entry.get("completedAt")),
            message=str(message) if (message := entry.get("message")) else None,
        )

    @classmethod
    def records(cls, env_status: Mapping[str, Any]) -> list[Migration]:
        """``status.environments.<env>.migrations``, newest first."""
        return [cls.from_status(entry) for entry in env_status.get("migrations") or []]


def _format(moment: datetime.datetime | None) -> str | None:
    return moment.astimezone(datetime.UTC).strftime(_RFC3339) if moment is not None else None


def succeeded(records: Iterable[Migration], image: str) -> Migration | None:
    """The successful migration of ``image``, if it ran here."""
    return next(
        (r for r in records if r.image == image and r.state is MigrationState.SUCCEEDED), None
    )


def record(
    records: Sequence[Migration], migration: Migration, limit: int = MIGRATIONS_LIMIT
) -> list[Migration]:
    """Newest first, one entry per image (a rerun replaces its failure), capped at ``limit``."""
    others = [r for r in records if r.image != migration.image]
    return [migration, *others][:limit]


def job_state(job: Mapping[str, Any], image: str) -> Migration:
    """What a migration Job says about the migration of ``image``."""
    end = job_end(job)
    name = str(job.get("metadata", {}).get("name", ""))
    state = MigrationState(str(end.phase))
    return Migration(image, name, state, end.started_at, end.finished_at, end.reason)


# A password in a URL's user part (postgres://user:secret@host), and `key=value` pairs whose key
# names a secret: the shapes a migration tool prints a connection string or its settings in.
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]*):[^@\s]*@", re.IGNORECASE)
_SECRET_ASSIGNMENT = re.compile(
    r"(?P<key>\b[\w.-]*(?:password|passwd|secret|token|api[_-]?key)[\w.-]*\s*[=:]\s*)"
    r"(?P<quote>['\"]?)[^\s'\"]+(?P=quote)",
    re.IGNORECASE,
)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` without any of ``secrets`` (the service's own values, longest first so a value
    containing another goes whole) and without what looks like a password."""
    for value in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    text = _URL_PASSWORD.sub(rf"\g<scheme>:{REDACTED}@", text)
    return _SECRET_ASSIGNMENT.sub(rf"\g<key>{REDACTED}", text)


def log_tail(log: str, secrets: Iterable[str]) -> str:
    """The last lines of a failed migration's log, redacted, short enough for a condition."""
    lines = [line for line in log.splitlines() if line.strip()][-LOG_TAIL_LINES:]
    tail = redact("\n".join(lines), secrets)
    return tail[-LOG_TAIL_CHARACTERS:]
