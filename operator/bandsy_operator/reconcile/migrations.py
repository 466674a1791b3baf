"""Migrations as a step of a rollout (SPEC §11): between the promotion gates and the Deployment.

A rollout the gates allowed waits for the new image's migration Job in that environment; the
Deployment keeps the old image until the Job succeeded. The environment's status records each
migration, so an image migrates once per environment whatever restarts or resyncs come between.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .. import naming
from ..constants import JOB_NAME_LABEL, MIGRATION_LABEL
from ..kube import CLIENT_ERRORS, KubeApi, Manifest, ObjectRef
from ..migrations import (
    LOG_TAIL_LINES,
    Migration,
    MigrationState,
    job_state,
    log_tail,
    record,
    succeeded,
)
from ..models import Environment, Service
from ..observation import ReadMode
from ..promotion import GateReason, GateVerdict, Image

log = logging.getLogger(__name__)

# A running migration is followed by its Job's watch events; this only bounds the wait if one
# was missed.
RUNNING_RECHECK_SECONDS = 30.0


@dataclass
class MigrationStep:
    """What the rollout of one environment does about migrations in this reconcile.
    ``start``: the image whose Job to create once the service's objects are applied."""

    verdict: GateVerdict
    records: list[Migration] = field(default_factory=list)
    start: Image | None = None


def _held(
    verdict: GateVerdict,
    current: Image | None,
    reason: GateReason,
    message: str,
    retry_after: float | None = None,
) -> GateVerdict:
    return replace(
        verdict,
        allowed=False,
        image_to_apply=current,
        reason=reason,
        message=message,
        gates_skipped=False,
        retry_after=retry_after,
    )


class MigrationRunner:
    def __init__(self, api: KubeApi) -> None:
        self.api = api

    async def step(
        self,
        service: Service,
        env: Environment,
        verdict: GateVerdict,
        current: Image | None,
        env_status: Mapping[str, Any],
        secrets: Iterable[str],
        mode: ReadMode,
    ) -> MigrationStep:
        """``verdict`` as the migration of the image it lets through allows: unchanged once
        that image migrated here, held while its Job runs or after it failed."""
        records = Migration.records(env_status)
        target = verdict.image_to_apply
        if service.spec.migrations is None or target is None:
            return MigrationStep(verdict, records)
        image = str(target)
        if succeeded(records, image) is not None:
            return MigrationStep(verdict, records)
        name = naming.migration_job(service.name, image)
        ref = ObjectRef("batch/v1", "Job", env.namespace, name)
        if not verdict.allowed or target == current:
            # Nothing to migrate: what runs stays. A crash after its rollout and before the
            # status was written kept its migration out of the records: a live read finds it.
            if mode is ReadMode.LIVE and (job := await self.api.get(ref)) is not None:
                state = job_state(job, image)
                if state.state is MigrationState.SUCCEEDED:
                    records = record(records, state)
            return MigrationStep(verdict, records)
        job = await self.api.get(ref)
        keeps = f"{current.tag} keeps running" if current is not None else "nothing runs yet"
        if job is None:  # never ran here, or a person deleted its failed Job to run it again
            if (running := await self._running(env, service.name)) is not None:
                message = (
                    f"{target.tag}: its migration waits for Job {running} to finish (one "
                    f"migration at a time); {keeps}"
                )
                return MigrationStep(
                    _held(verdict, current, GateReason.MIGRATING, message, RUNNING_RECHECK_SECONDS),
                    records,
                )
            starting = Migration(image, name, MigrationState.RUNNING)
            message = f"{target.tag}: migrating first (Job {name}); {keeps}"
            return MigrationStep(
                _held(verdict, current, GateReason.MIGRATING, message, RUNNING_RECHECK_SECONDS),
                record(records, starting),
                start=target,
            )
        state = job_state(job, image)
        if state.state is MigrationState.SUCCEEDED:
            await self._delete_superseded(env, service.name, keep=name)
            return MigrationStep(verdict, record(records, state))
        if state.state is MigrationState.RUNNING:
            message = f"{target.tag}: migrating first (Job {name} running); {keeps}"
            return MigrationStep(
                _held(verdict, current, GateReason.MIGRATING, message, RUNNING_RECHECK_SECONDS),
                record(records, state),
            )
        known = next((r for r in records if r.image == image and r.job == name), None)
        if known is not None and known.state is MigrationState.FAILED and known.message:
            state = replace(state, message=known.message)  # its log was read once already
        else:
            tail = await self._log_tail(env.namespace, name, secrets)
            state = replace(state, message=f"{state.message}; last log lines:\n{tail}")
        message = (
            f"the migration of {target.tag} failed (Job {name}); {keeps}. Push a fixed tag, or "
            f"run it again: kubectl -n {env.namespace} delete job {name}. {state.message}"
        )
        return MigrationStep(
            _held(verdict, current, GateReason.MIGRATION_FAILED, message), record(records, state)
        )

    async def _log_tail(self, namespace: str, job: str, secrets: Iterable[str]) -> str:
        """The end of the newest attempt's log, redacted; what went wrong reading it if not."""
        try:
            pods = await self.api.list("v1", "Pod", namespace, {JOB_NAME_LABEL: job})
            if not pods:
                return "(its pods are gone)"
            newest = max(pods, key=lambda p: str(p["metadata"].get("creationTimestamp", "")))
            text = await self.api.log_tail(namespace, newest["metadata"]["name"], LOG_TAIL_LINES)
        except CLIENT_ERRORS as error:
            return f"(its log could not be read: {type(error).__name__})"
        return log_tail(text, secrets) or "(its log is empty)"

    async def _running(self, env: Environment, service: str) -> str | None:
        """A migration Job of the service still running here (another image's)."""
        jobs = await self.api.list("batch/v1", "Job", env.namespace, {MIGRATION_LABEL: service})
        return next(
            (
                job["metadata"]["name"]
                for job in jobs
                if job_state(job, "").state is MigrationState.RUNNING
            ),
            None,
        )

    async def _delete_superseded(self, env: Environment, service: str, keep: str) -> None:
        """Older migration Jobs of the service here: their outcome is in the status."""
        jobs = await self.api.list("batch/v1", "Job", env.namespace, {MIGRATION_LABEL: service})
        for job in jobs:
            name = job["metadata"]["name"]
            if name != keep and job_state(job, "").state is not MigrationState.RUNNING:
                await self.api.delete(ObjectRef("batch/v1", "Job", env.namespace, name))

    async def start(self, job: Manifest) -> None:
        """Create the Job (a migration's, or a restore's), unless it exists (a reconcile before
        a crash created it)."""
        if await self.api.create_by_apply(job) is not None:
            log.info("%s/%s: Job started", job["metadata"]["namespace"], job["metadata"]["name"])
