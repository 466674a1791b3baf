"""kopf wiring: the start-up and clean-up handlers that run the controller. No logic lives here.

kopf runs the process (signals, the liveness endpoint, these two handlers); it watches nothing.
The controller's own watches (``watches``) deliver every event without kopf's per-object queues
and workers, and the controller runs its own finalizer (kopf's would cost two patches of every
new object and a deep copy of every body on every event).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from . import metrics
from .controller import Controller
from .kube import KubeApi
from .settings import OperatorSettings

log = logging.getLogger(__name__)
# kopf's retries of a failed API request of its own (it discovers our kinds at start). Its default
# grows to 21 s between attempts and gives up after about a minute; an API server returning also
# refuses requests with 403 for a moment, until its RBAC cache is filled. This retries every 2 s
# and gives up after about five minutes.
API_RETRY_BACKOFFS = (0.5, 1.0, 1.5) + (2.0,) * 150


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.networking.error_backoffs = API_RETRY_BACKOFFS
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
