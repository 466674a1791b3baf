"""The one place tests and benchmarks play kubelet + deployment controller (there is no kubelet
here): they write the status a real deployment controller writes once every pod of the current
template is running and ready."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from lightkube.resources.apps_v1 import Deployment
from lightkube.types import PatchType

from bandsy_operator.constants import FIELD_MANAGER, MANAGED_BY_LABEL
from bandsy_operator.kube import CLIENT_ERRORS, KubeApi, ObjectRef

log = logging.getLogger(__name__)


def ready_status(deployment: dict[str, Any]) -> dict[str, Any]:
    replicas = int(deployment["spec"].get("replicas", 1))
    return {
        "observedGeneration": deployment["metadata"]["generation"],
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "conditions": [
            {
                "type": "Available",
                "status": "True",
                "reason": "MinimumReplicasAvailable",
                "message": "Deployment has minimum availability.",
            }
        ],
    }


def is_ready(deployment: dict[str, Any]) -> bool:
    status = deployment.get("status") or {}
    return bool(
        status.get("observedGeneration") == deployment["metadata"].get("generation")
        and status.get("readyReplicas") == deployment["spec"].get("replicas", 1)
    )


def crashing_status(deployment: dict[str, Any]) -> dict[str, Any]:
    """Every pod of the current template is up to date but none is ready: a crash loop."""
    replicas = int(deployment["spec"].get("replicas", 1))
    return {
        "observedGeneration": deployment["metadata"]["generation"],
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": 0,
        "availableReplicas": 0,
        "unavailableReplicas": replicas,
        "conditions": [
            {
                "type": "Available",
                "status": "False",
                "reason": "MinimumReplicasUnavailable",
                "message": "Deployment does not have minimum availability.",
            }
        ],
    }


async def make_deployment_ready(api: KubeApi, namespace: str, name: str) -> dict[str, Any]:
    return await _report(api, namespace, name, ready_status)


async def make_deployment_crash(api: KubeApi, namespace: str, name: str) -> dict[str, Any]:
    return await _report(api, namespace, name, crashing_status)


async def _report(
    api: KubeApi, namespace: str, name: str, status_of: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    live = await api.get(ObjectRef("apps/v1", "Deployment", namespace, name))
    assert live is not None, f"Deployment {namespace}/{name} does not exist"
    status = status_of(live)
    await api.client.patch(
        Deployment.Status, name, {"status": status}, namespace=namespace, patch_type=PatchType.MERGE
    )
    return status


class SimulatedKubelet:
    """Watches the operator's Deployments everywhere and reports each new generation ready at
    once, as a cluster whose pods always start would. Survives API server restarts."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        labels: dict[str, Any] = {MANAGED_BY_LABEL: FIELD_MANAGER}
        while True:
            try:
                async for _, obj in self.api.client.watch(Deployment, namespace="*", labels=labels):
                    deployment: dict[str, Any] = obj.to_dict()
                    if not is_ready(deployment):
                        # From the event itself: the Deployment may be gone by now (a 404,
                        # ignored), and a newer generation brings its own event.
                        meta = deployment["metadata"]
                        with contextlib.suppress(*CLIENT_ERRORS):
                            await self.api.client.patch(
                                Deployment.Status,
                                meta["name"],
                                {"status": ready_status(deployment)},
                                namespace=meta["namespace"],
                                patch_type=PatchType.MERGE,
                            )
            except CLIENT_ERRORS as error:
                log.debug("kubelet watch interrupted (%s); watching again", error)
                await asyncio.sleep(0.5)
