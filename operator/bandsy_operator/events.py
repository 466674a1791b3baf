"""Kubernetes Events about our custom resources, posted on transitions only.

Messages are built from names and reasons; callers never pass a credential or a raw driver
error here (see ``redact``).
"""

from __future__ import annotations

import datetime
import logging
import secrets
import socket
from typing import Literal

from lightkube.core.exceptions import ApiError

from .constants import API_VERSION, GROUP
from .kube import KubeApi
from .models import ObjectIdentity

log = logging.getLogger(__name__)

EventType = Literal["Normal", "Warning"]
# Events of cluster-scoped objects live in "default", as kubectl and kopf expect.
EVENTS_NAMESPACE = "default"
REPORTING_CONTROLLER = f"{GROUP}/operator"


class EventRecorder:
    def __init__(self, api: KubeApi) -> None:
        self.api = api
        self.instance = socket.gethostname()

    async def post(
        self, kind: str, owner: ObjectIdentity, type_: EventType, reason: str, message: str
    ) -> None:
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        event = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {
                "name": f"{owner.name}.{secrets.token_hex(8)}",
                "namespace": EVENTS_NAMESPACE,
            },
            "eventTime": now,
            "reportingController": REPORTING_CONTROLLER,
            "reportingInstance": self.instance,
            "action": "Reconcile",
            "reason": reason,
            "note": message[:1024],
            "type": type_,
            "regarding": {
                "apiVersion": API_VERSION,
                "kind": kind,
                "name": owner.name,
                "uid": owner.uid,
            },
        }
        try:
            await self.api.create(event)
        except ApiError as error:
            # An Event is best effort; failing to post one must not fail the reconcile.
            log.warning("could not post %s event for %s: %s", reason, owner.name, error)
