"""Mirrors (SPEC §11) as a step of a service's reconcile in one environment.

The mirror CronJob's Jobs fill and scrub the mirror copy ``<db>-mirror``; this step reads the
ones that ended since the last reconcile, and for a succeeded one swaps the copy in: the copy
becomes ``<db>``, the replaced data the next copy (emptied by the next run). A Job marks the copy
it filled with a token it reports; the swap happens only while the copy carries that Job's
token, so a swap retried after a crash, or a Job whose copy a later run refilled, swaps nothing.
A failed Job (the scrub failed, say) leaves ``<db>`` as it was: its program emptied the copy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import naming
from ..backends import Account
from ..constants import JOB_NAME_LABEL, MIRROR_LABEL
from ..jobs import JobPhase, job_end
from ..models import Environment, Service
from ..restores import mirror_refusal, scrub_needed
from .backups import termination_message
from .databases import AccountRef
from .restores import PostgresJobs, job_outcome

log = logging.getLogger(__name__)
RFC3339 = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class MirrorStep:
    """``record``: status.environments.<env>.mirror (None: no mirror here); ``marker``: the
    last mirror swapped in, for the pod template; ``runs``: whether the CronJob is built."""

    record: dict[str, Any] | None
    marker: str | None
    runs: bool = False


def refused(
    service: Service, env: Environment, environments: Mapping[str, Environment]
) -> str | None:
    """Why this service's database here is not mirrored (None: it is)."""
    if (why := mirror_refusal(env, environments)) is not None:
        return why
    if scrub_needed(env, environments) and not (service.spec.postgres.scrub or "").strip():
        mirror = env.spec.postgres.mirror if env.spec.postgres else None
        source = mirror.from_ if mirror else "?"
        return (
            f"{source!r} is protected: its data reaches {env.name!r} only scrubbed; set "
            "spec.postgres.scrub (SQL run on the copy as the service's role)"
        )
    return None


class MirrorRunner(PostgresJobs):
    async def step(
        self,
        service: Service,
        env: Environment,
        environments: Mapping[str, Environment],
        account: AccountRef | None,
        before: Mapping[str, Any] | None,
    ) -> MirrorStep:
        before = dict(before or {})
        marker = (before.get("lastMirrored") or {}).get("job")
        mirror = env.spec.postgres.mirror if env.spec.postgres else None
        if mirror is None or account is None:
            # What was mirrored stays on record, and with it the pods' marker: they do not
            # restart for this. A refusal no longer applies.
            kept = {k: v for k, v in before.items() if k != "refused"}
            return MirrorStep(kept or None, marker)
        why = refused(service, env, environments)
        if why is not None:
            return MirrorStep({**before, "refused": why}, marker)
        before.pop("refused", None)
        record = await self._take_in(service, env, account, before)
        return MirrorStep(record, (record.get("lastMirrored") or {}).get("job"), runs=True)

    async def _take_in(
        self, service: Service, env: Environment, account: AccountRef, before: dict[str, Any]
    ) -> dict[str, Any]:
        """The mirror Jobs that ended since ``before``, oldest first."""
        jobs = await self.api.list("batch/v1", "Job", env.namespace, {MIRROR_LABEL: service.name})
        counted = set(before.get("jobs") or [])
        record = dict(before)
        for job in sorted(jobs, key=lambda j: str(j["metadata"].get("creationTimestamp", ""))):
            name = job["metadata"]["name"]
            end = job_end(job)
            if name in counted or end.phase is JobPhase.RUNNING:
                continue
            at = end.finished_at.strftime(RFC3339) if end.finished_at else ""
            pods = await self.api.list("v1", "Pod", env.namespace, {JOB_NAME_LABEL: name})
            outcome = job_outcome(termination_message(pods))
            if end.phase is JobPhase.SUCCEEDED and outcome.get("mirrored"):
                if await self._swap_in(env, account, str(outcome.get("token", ""))):
                    log.info("%s/%s: mirror %s swapped in", env.name, service.name, name)
                    record["lastMirrored"] = {
                        "job": name,
                        "at": at,
                        "backup": outcome.get("backup"),
                        "rows": outcome.get("rows"),
                        "scrubbed": bool(outcome.get("scrubbed")),
                    }
                else:
                    why = "its copy was refilled by a later run before it was swapped in"
                    record["lastFailed"] = {"job": name, "at": at, "reason": why}
            else:
                why = outcome.get("error") or end.reason or "the mirror Job failed"
                record["lastFailed"] = {"job": name, "at": at, "reason": str(why)}
            counted.add(name)
        existing = {j["metadata"]["name"] for j in jobs}
        record["jobs"] = sorted(counted & existing)
        return record

    async def _swap_in(self, env: Environment, account: AccountRef, token: str) -> bool:
        """Swap the copy in if it holds this Job's data; True when it is (or already was) in."""
        mark = f"mirror {token}"
        server = self._server(env)
        own = Account(
            account.user,
            database=account.scope,
            mirror_database=naming.mirror_database(account.scope),
        )
        live, copy = await self._backend.mirror_token(server, own)
        if token and copy == mark:
            await self._backend.exchange_mirror(server, own)
            return True
        return bool(token) and live == mark
