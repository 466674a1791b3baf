"""Restores (SPEC §11) as a step of a service's reconcile in one environment.

A request (``restores.request_for``) moves through: checked (or Refused) → ``<db>-restore``
made empty and the restore Job started (Restoring) → the Job ended: Failed (``<db>-restore``
dropped, nothing else touched) or swapped in (Restored; the replaced database kept as
``<db>-before-<request>``; the pods restart once). A cleanup request drops that one. Each step
is safe to run again after a crash: the record in status says where the request stands, the
database names follow from the request, and the swap is one transaction.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import naming
from ..backends import Account, Server
from ..backends.postgres import PostgresBackend
from ..constants import JOB_NAME_LABEL
from ..jobs import JobPhase, job_end
from ..kube import KubeApi, ObjectRef
from ..models import Environment, Service
from ..restores import (
    FINISHED,
    InvalidRestoreRequestError,
    RestorePhase,
    RestoreRequest,
    parse_origin,
    record,
    refusal,
    request_for,
    restored_marker,
)
from .backups import termination_message
from .databases import AccountRef, DatabaseReconciler

log = logging.getLogger(__name__)
RFC3339 = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class RestoreStep:
    """``record``: status.environments.<env>.restore (None: there never was one); ``marker``:
    the last restore swapped in, for the pod template; ``start``: a restore Job to create."""

    record: dict[str, Any] | None
    marker: str | None
    start: RestoreRequest | None = None
    target: str = ""  # the database the Job fills
    deferred: bool = False  # a request waits for the next reconcile


class PostgresJobs:
    """What the restore and mirror steps share: the API, and the service's PostgreSQL server
    and backend, for what their Jobs cannot do as the service's role (make, swap, drop)."""

    def __init__(self, api: KubeApi, databases: DatabaseReconciler) -> None:
        self.api = api
        self.databases = databases

    @property
    def _backend(self) -> PostgresBackend:
        backend = self.databases.backends["postgres"]
        assert isinstance(backend, PostgresBackend)
        return backend

    def _server(self, env: Environment) -> Server:
        return self.databases.server(env, "postgres")


class RestoreRunner(PostgresJobs):
    @staticmethod
    def deferred(
        service: Service, env: Environment, before: Mapping[str, Any] | None
    ) -> RestoreStep:
        """The step while the server does not know the service's account yet: nothing
        changes, and a request waits for the next reconcile."""
        waiting = request_for(service.meta.annotations, env.name) is not None
        return RestoreStep(
            dict(before) if before else None, restored_marker(before or {}), deferred=waiting
        )

    async def step(
        self,
        service: Service,
        env: Environment,
        environments: Mapping[str, Environment],
        account: AccountRef | None,
        before: Mapping[str, Any] | None,
        now: datetime.datetime,
        job_image: str | None,
    ) -> RestoreStep:
        """``environments``: where the source is looked up; ``account``: the service's
        PostgreSQL account here; ``job_image``: the operator's own, which runs the Job."""
        marker = restored_marker(before or {})
        unchanged = RestoreStep(dict(before) if before else None, marker)
        request = request_for(service.meta.annotations, env.name)
        if request is None:
            return unchanged
        if isinstance(request, InvalidRestoreRequestError):
            if before and before.get("invalid") == str(request):
                return unchanged
            body = {"phase": str(RestorePhase.REFUSED), "invalid": str(request)}
            return RestoreStep({**(before or {}), **body, "message": str(request)}, marker)
        if before and before.get("phase") == RestorePhase.RESTORING and before["id"] != request.id:
            # One at a time: a request made while another runs waits for it to end.
            request = RestoreRequest(before["id"], *parse_origin(str(before.get("from"))))
        current = before if before and before.get("id") == request.id else None
        phase = RestorePhase(current["phase"]) if current else None
        if phase in FINISHED or phase is RestorePhase.CLEANED_UP:
            return unchanged
        at = now.strftime(RFC3339)
        if account is None:
            message = "the service has no PostgreSQL database here to restore"
            return RestoreStep(record(request, RestorePhase.REFUSED, message, at=at), marker)
        if request.cleanup:
            return RestoreStep(await self._clean_up(env, account, request, before, at), marker)
        target = naming.restore_database(account.scope)
        if phase is None:
            refused = refusal(env, environments.get(request.source))
            if refused is None and job_image is None:
                refused = (
                    "the operator does not know its own image, which runs restores: set "
                    "BANDSY_JOB_IMAGE, or BANDSY_POD_NAME in its pod"
                )
            if refused is not None:
                return RestoreStep(record(request, RestorePhase.REFUSED, refused, at=at), marker)
            await self._backend.prepare_restore(self._server(env), _account(account), target)
            started = record(
                request,
                RestorePhase.RESTORING,
                f"restoring {request.origin} into a new database",
                job=naming.restore_job(service.name, request.id),
                startedAt=at,
            )
            log.info(
                "%s/%s: restore %s of %s started",
                env.name,
                service.name,
                request.id,
                request.origin,
            )
            return RestoreStep(started, marker, request, target)
        assert current is not None
        return await self._follow(service, env, account, request, current, marker, target, at)

    async def _follow(
        self,
        service: Service,
        env: Environment,
        account: AccountRef,
        request: RestoreRequest,
        current: Mapping[str, Any],
        marker: str | None,
        target: str,
        at: str,
    ) -> RestoreStep:
        """A restore under way: its Job still running (or not made yet: made again), or ended."""
        name = naming.restore_job(service.name, request.id)
        job = await self.api.get(ObjectRef("batch/v1", "Job", env.namespace, name))
        if job is None:  # a crash before it was created
            return RestoreStep(dict(current), marker, request, target)
        end = job_end(job)
        if end.phase is JobPhase.RUNNING:
            return RestoreStep(dict(current), marker)
        pods = await self.api.list("v1", "Pod", env.namespace, {JOB_NAME_LABEL: name})
        outcome = job_outcome(termination_message(pods))
        server, own = self._server(env), _account(account)
        if end.phase is JobPhase.FAILED or not outcome.get("restored"):
            await self._backend.drop_database(server, own, target)
            why = outcome.get("error") or end.reason or "the restore Job failed"
            failed = {**current, "phase": str(RestorePhase.FAILED), "finishedAt": at}
            failed["message"] = f"nothing was changed: {why}"
            return RestoreStep(failed, marker)
        previous = naming.previous_database(account.scope, request.id)
        await self._backend.swap_in(server, own, target, previous)
        log.info("%s/%s: restore %s swapped in", env.name, service.name, request.id)
        restored = {
            **current,
            "phase": str(RestorePhase.RESTORED),
            "finishedAt": at,
            "backup": outcome.get("backup"),
            "rows": outcome.get("rows"),
            "previous": previous,
            "restoredId": request.id,
            "message": (
                f"restored {request.source}@{outcome.get('backup')} ({outcome.get('rows')} "
                f"rows); the replaced database is kept as {previous} until "
                "`bandsyctl restore --cleanup`"
            ),
        }
        return RestoreStep(restored, request.id)

    async def _clean_up(
        self,
        env: Environment,
        account: AccountRef,
        request: RestoreRequest,
        before: Mapping[str, Any] | None,
        at: str,
    ) -> dict[str, Any]:
        previous = (before or {}).get("previous")
        if not previous or (before or {}).get("phase") != RestorePhase.RESTORED:
            message = "nothing to clean up: no restore here kept a replaced database"
            return {**(before or {}), **record(request, RestorePhase.REFUSED, message, at=at)}
        await self._backend.drop_database(self._server(env), _account(account), str(previous))
        cleaned = {**(before or {}), "id": request.id, "phase": str(RestorePhase.CLEANED_UP)}
        cleaned.pop("previous")
        cleaned["message"] = f"dropped {previous}, the database the last restore replaced"
        cleaned["finishedAt"] = at
        return cleaned


def _account(ref: AccountRef) -> Account:
    return Account(ref.user, database=ref.scope)


def job_outcome(message: str | None) -> dict[str, Any]:
    """The JSON a Job of the operator's image wrote as its termination message."""
    if not message:
        return {}
    try:
        body = json.loads(message)
    except ValueError:
        return {"error": message[-500:]}
    return body if isinstance(body, dict) else {}
