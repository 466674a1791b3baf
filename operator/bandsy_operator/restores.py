"""Restores and mirrors of a service's database (SPEC §11), pure: the request `bandsyctl
restore` writes, whether a restore or a mirror may run, and its record in status.

A request is the annotation ``bandsy.app/restore.<env>`` on the BandsyService, JSON:
``{"id": "20261201T110500Z-3f2a", "from": "production@latest"}`` restores the newest verified
backup of the service in ``production`` (or ``ENV@<stamp>`` that one) into ``<env>``;
``{"id": ..., "cleanup": true}`` drops the database the last restore there replaced. A request
is carried out once: its ``id`` goes into the record, and only a new ``id`` starts another.
"""

from __future__ import annotations

import datetime
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .backup.manifest import parse_stamp, stamp
from .constants import RESTORE_ANNOTATION_PREFIX
from .models import Environment

LATEST = "latest"


class RestorePhase(StrEnum):
    RESTORING = "Restoring"  # the Job fills <db>-restore
    RESTORED = "Restored"  # swapped in; the replaced database is kept
    FAILED = "Failed"  # nothing was swapped: the service's database is as it was
    REFUSED = "Refused"  # the request was not carried out (see the message)
    CLEANED_UP = "CleanedUp"  # the replaced database was dropped


FINISHED = frozenset({RestorePhase.RESTORED, RestorePhase.FAILED, RestorePhase.REFUSED})


class InvalidRestoreRequestError(ValueError):
    pass


@dataclass(frozen=True)
class RestoreRequest:
    id: str
    source: str = ""  # the environment whose backup is restored; "" for a cleanup
    backup: str = LATEST  # a backup's stamp, or LATEST

    @property
    def cleanup(self) -> bool:
        return not self.source

    @property
    def origin(self) -> str:
        """``ENV@stamp`` or ``ENV@latest``, as `bandsyctl restore --from` takes it."""
        return f"{self.source}@{self.backup}"

    def to_annotation(self) -> str:
        body: dict[str, Any] = {"id": self.id}
        if self.cleanup:
            body["cleanup"] = True
        else:
            body["from"] = self.origin
        return json.dumps(body, sort_keys=True)


def annotation_key(env: str) -> str:
    return f"{RESTORE_ANNOTATION_PREFIX}{env}"


def new_request_id(now: datetime.datetime) -> str:
    """Sortable and unique enough for one person's requests: ``<stamp>-<4 hex>``."""
    return f"{stamp(now)}-{secrets.token_hex(2)}"


def parse_origin(text: str) -> tuple[str, str]:
    """``ENV@latest`` or ``ENV@20261201T030000Z`` (a backup's stamp, as `bandsyctl backups`
    lists them)."""
    source, at, backup = text.partition("@")
    if not source or not at or not backup:
        raise InvalidRestoreRequestError(f"{text!r}: expected ENV@TIMESTAMP or ENV@latest")
    if backup != LATEST:
        try:
            parse_stamp(backup)
        except ValueError:
            raise InvalidRestoreRequestError(
                f"{text!r}: {backup!r} is neither 'latest' nor a backup's timestamp "
                "(like 20261201T030000Z, as `bandsyctl backups` lists them)"
            ) from None
    return source, backup


def parse_request(text: str) -> RestoreRequest:
    try:
        body = json.loads(text)
    except ValueError:
        raise InvalidRestoreRequestError(f"not JSON: {text[:100]!r}") from None
    if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not body["id"]:
        raise InvalidRestoreRequestError('expected {"id": ..., "from": "ENV@..."|"cleanup": true}')
    if body.get("cleanup") is True:
        return RestoreRequest(body["id"])
    if not isinstance(body.get("from"), str):
        raise InvalidRestoreRequestError('"from" (ENV@TIMESTAMP or ENV@latest) is missing')
    source, backup = parse_origin(body["from"])
    return RestoreRequest(body["id"], source, backup)


def request_for(
    annotations: Mapping[str, str], env: str
) -> RestoreRequest | InvalidRestoreRequestError | None:
    text = annotations.get(annotation_key(env))
    if text is None:
        return None
    try:
        return parse_request(text)
    except InvalidRestoreRequestError as error:
        return error


def refusal(target: Environment, source: Environment | None) -> str | None:
    """Why a restore from ``source`` into ``target`` may not run; None when it may. A
    protected environment's data never lands unscrubbed in an unprotected one: that is what a
    mirror (with scrub) is for."""
    if (refused := _storage_refusal(target, source, "a restore")) is not None:
        return refused
    assert source is not None
    if source.protected and not target.protected:
        return (
            f"{source.name!r} is protected and {target.name!r} is not: its data may reach "
            f"{target.name!r} only scrubbed (spec.postgres.mirror and the service's "
            "spec.postgres.scrub)"
        )
    return None


def mirror_refusal(target: Environment, environments: Mapping[str, Environment]) -> str | None:
    """Why ``target``'s spec.postgres.mirror cannot run; None when it can (or there is none)."""
    mirror = target.spec.postgres.mirror if target.spec.postgres else None
    if mirror is None:
        return None
    if target.protected:
        return f"{target.name!r} is protected: a protected environment is never a mirror target"
    if mirror.from_ == target.name:
        return "an environment cannot mirror itself"
    return _storage_refusal(target, environments.get(mirror.from_), "a mirror")


def scrub_needed(target: Environment, environments: Mapping[str, Environment]) -> bool:
    """A mirror of a protected environment's data: each service must say how to scrub it."""
    mirror = target.spec.postgres.mirror if target.spec.postgres else None
    source = environments.get(mirror.from_) if mirror else None
    return source is not None and source.protected


def _storage_refusal(target: Environment, source: Environment | None, what: str) -> str | None:
    """The Job reads the source's backups with the target's bucket keys: both environments
    must back up to the same bucket and prefix."""
    if target.spec.backups is None:
        return (
            f"environment {target.name!r} has no spec.backups: {what} reads its bucket with "
            "its keys"
        )
    if source is None:
        return f"the environment to {what.split()[-1]} from does not exist"
    if source.spec.backups is None:
        return f"environment {source.name!r} has no spec.backups: it has no backups to use"
    ours, theirs = target.spec.backups.storage.s3, source.spec.backups.storage.s3
    if (ours.endpoint, ours.bucket, ours.prefix) != (theirs.endpoint, theirs.bucket, theirs.prefix):
        return (
            f"environments {source.name!r} and {target.name!r} back up to different buckets "
            f"(spec.backups.storage.s3 endpoint, bucket, prefix): {what} reads the target's"
        )
    return None


def record(
    request: RestoreRequest, phase: RestorePhase, message: str, **fields: Any
) -> dict[str, Any]:
    """A new ``status.environments.<env>.restore``."""
    body: dict[str, Any] = {"id": request.id, "phase": str(phase), "message": message}
    if not request.cleanup:
        body["from"] = request.origin
    body.update({k: v for k, v in fields.items() if v is not None})
    return body


def restored_marker(before: Mapping[str, Any]) -> str | None:
    """The last restore swapped in here: the pods' template carries it, so they restart (and
    reconnect to the new data) once per restore."""
    value = before.get("restoredId")
    return str(value) if value else None
