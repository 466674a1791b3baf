"""Kubernetes Events as tests read them.

Listed through the core ``v1`` API: it serves every Event, including those posted by older
clients without ``eventTime`` (which the typed ``events.k8s.io/v1`` model refuses). Our own
Events read back with ``message`` for their note and ``involvedObject`` for ``regarding``.
"""

from __future__ import annotations

from typing import Any

from bandsy_operator.events import EVENTS_NAMESPACE
from bandsy_operator.kube import KubeApi


async def all_events(kube: KubeApi) -> list[dict[str, Any]]:
    """Every Event in every namespace."""
    return await kube.list("v1", "Event")


async def events_about(kube: KubeApi, name: str, reason: str | None = None) -> list[dict[str, Any]]:
    """Events about the cluster-scoped object ``name`` (with ``reason``, if given)."""
    return [
        event
        for event in await kube.list("v1", "Event", namespace=EVENTS_NAMESPACE)
        if event["involvedObject"].get("name") == name
        and (reason is None or event.get("reason") == reason)
    ]
