"""Backup outcomes into status (SPEC §11): finished backup Jobs, read when one ends (its watch
event) or on a live reconcile, and merged by ``backup.outcome``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..backup.outcome import FinishedBackup, merge
from ..constants import BACKUP_LABEL, JOB_NAME_LABEL
from ..jobs import JobPhase, job_end
from ..kube import KubeApi, Manifest
from ..models import Environment
from ..observation import Basis, ReadMode, basis
from ..world import World

RFC3339 = "%Y-%m-%dT%H:%M:%SZ"


def termination_message(pods: list[Manifest]) -> str | None:
    """What the newest attempt's container wrote as it ended."""
    if not pods:
        return None
    newest = max(pods, key=lambda p: str(p["metadata"].get("creationTimestamp", "")))
    for container in (newest.get("status") or {}).get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated") or {}
        if terminated.get("message"):
            return str(terminated["message"])
    return None


class BackupObserver:
    def __init__(self, api: KubeApi, world: World) -> None:
        self.api = api
        self.world = world

    async def status(
        self, env: Environment, service: str, before: Mapping[str, Any], mode: ReadMode
    ) -> dict[str, Any]:
        """``status.environments.<env>.backup`` with every backup Job that ended since."""
        news = self.world.take_backup_news(env.namespace, service)
        if not news and basis(mode, recorded=True) is not Basis.READ:
            return dict(before)
        counted = set(before.get("jobs") or [])
        jobs = await self.api.list("batch/v1", "Job", env.namespace, {BACKUP_LABEL: service})
        finished = []
        for job in sorted(jobs, key=lambda j: str(j["metadata"].get("creationTimestamp", ""))):
            name = job["metadata"]["name"]
            end = job_end(job)
            if name in counted or end.phase is JobPhase.RUNNING:
                continue
            pods = await self.api.list("v1", "Pod", env.namespace, {JOB_NAME_LABEL: name})
            finished.append(
                FinishedBackup(
                    job=name,
                    finished_at=end.finished_at.strftime(RFC3339) if end.finished_at else "",
                    succeeded=end.phase is JobPhase.SUCCEEDED,
                    message=termination_message(pods),
                    job_reason=end.reason,
                )
            )
        return merge(before, finished, [j["metadata"]["name"] for j in jobs])
