"""kopf wiring: thin handlers that feed the controller. No logic lives here.

kopf delivers the custom resources' watch events (``watches`` those of the objects we own,
without kopf's per-object queues); the controller does the rest, its finalizer included (kopf's
own would cost two patches of every new object and a deep copy of every body on every event).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import kopf

from . import metrics
from .constants import (
    ENVIRONMENT_PLURAL,
    GROUP,
    SERVICE_PLURAL,
    VERSION,
)
from .controller import Controller
from .kube import KubeApi
from .settings import OperatorSettings

log = logging.getLogger(__name__)
# kopf's retries of a failed API request, its watches' reconnects included. Its default grows to
# 21 s between attempts (so watches came back up to 13 s after the API server did; one returning
# also refuses requests with 403 for a moment, until its RBAC cache is filled) and gives up after
# about a minute. This retries every 2 s and gives up after about five minutes.
API_RETRY_BACKOFFS = (0.5, 1.0, 1.5) + (2.0,) * 150


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf keeps a copy of every object's spec (built from a deep copy of the whole body, on
    every event) to detect changes for its change handlers. There are none here: the controller
    compares what it needs and runs its own finalizer. So nothing is built, stored or patched."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.diffbase_storage = NoDiffBase()
    # Our own Events mark transitions; kopf's per-handler success events are noise.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.networking.error_backoffs = API_RETRY_BACKOFFS
    # kopf keeps a worker (and the latest body) per object until it has been idle for a while.
    # Our handlers return at once, so few short-lived workers suffice; at start-up, with every
    # service listed at once, this bounds the tasks, not the bodies (those wait in queues).
    settings.batching.worker_limit = 32
    settings.batching.idle_timeout = 1.0
    settings.watching.chunk_size = 200
    operator_settings = OperatorSettings.from_env()
    controller = Controller(KubeApi.from_environment(), operator_settings)
    # kopf retries this handler when it fails: serving again only points /metrics at this world.
    metrics.serve(operator_settings.metrics_port, controller.world)
    await controller.start()
    memo["controller"] = controller
    log.info("started")


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    controller: Controller = memo["controller"]
    await controller.stop()
    # Every reconcile has ended: the standby may take over now rather than a lease later.
    if (leadership := memo.get("leadership")) is not None:
        await asyncio.to_thread(leadership.release)
    await controller.api.close()


# Event handlers are async although they never await: kopf runs plain functions in a thread
# pool, and the world view and the work queue belong to the event loop's thread.
@kopf.on.event(GROUP, VERSION, ENVIRONMENT_PLURAL)
async def environment_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    memo["controller"].environment_event(event["type"], event["object"])


@kopf.on.event(GROUP, VERSION, SERVICE_PLURAL)
async def service_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    memo["controller"].service_event(event["type"], event["object"])
