"""Watches of the objects the operator owns (``watches``), against the real API server: where
they start, and how they go on after the server ends one. (A version the server forgot, 410
Gone, is in tests/unit/test_watches.py: a young API server's watch cache keeps every version.)"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bandsy_operator import watches
from bandsy_operator.kube import KubeApi, Manifest, ObjectRef
from bandsy_operator.watches import OWNED, Since, Watch, follow
from waiting import running, until

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def uid() -> str:
    return uuid.uuid4().hex[:6]


@contextlib.asynccontextmanager
async def namespace(kube: KubeApi) -> AsyncIterator[str]:
    name = f"watch-{uid()}"
    await kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        yield name
    finally:
        await kube.delete(ObjectRef("v1", "Namespace", "", name))


async def owned_config_map(kube: KubeApi, namespace: str, name: str) -> Manifest:
    return await kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": OWNED},
            "data": {"at": uid()},
        }
    )


class Seen:
    """The events of one namespace's ConfigMaps, as a handler receives them."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.events: list[tuple[str, str]] = []

    def handle(self, event_type: str, body: Manifest) -> None:
        meta: dict[str, Any] = body["metadata"]
        if meta.get("namespace") == self.namespace:
            self.events.append((event_type, meta["name"]))

    def names(self) -> list[str]:
        return [name for _, name in self.events]


async def test_a_watch_from_now_tells_only_what_changes_after_it_starts(kube: KubeApi) -> None:
    """Start-up reads what exists (the pass), so the Deployments' watch starts at the
    collection's version and hands over no event for an object that did not change."""
    async with namespace(kube) as ns:
        await owned_config_map(kube, ns, "before")
        seen = Seen(ns)
        watch = Watch("v1", "ConfigMap", OWNED, Since.NOW, seen.handle)
        async with running(follow(kube, watch, await watch.starting_version(kube))):
            await owned_config_map(kube, ns, "after")
            await until(lambda: seen.names() == ["after"], timeout=10)
            await owned_config_map(kube, ns, "before")  # changed now: news
            await until(lambda: seen.names() == ["after", "before"], timeout=10)
        assert seen.events == [("ADDED", "after"), ("MODIFIED", "before")]


async def test_a_watch_of_everything_tells_every_object_then_each_change(kube: KubeApi) -> None:
    """Pods and Jobs: what is there is news too. The changes after it come as well (a gzipped
    watch of the API server's held them back for good after the first objects)."""
    async with namespace(kube) as ns:
        await owned_config_map(kube, ns, "before")
        seen = Seen(ns)
        watch = Watch("v1", "ConfigMap", OWNED, Since.EVERYTHING, seen.handle)
        async with running(follow(kube, watch, await watch.starting_version(kube))):
            await until(lambda: seen.events == [("ADDED", "before")], timeout=10)
            await owned_config_map(kube, ns, "after")
            await owned_config_map(kube, ns, "before")
            await until(lambda: len(seen.events) == 3, timeout=10)
        assert seen.events == [("ADDED", "before"), ("ADDED", "after"), ("MODIFIED", "before")]


async def test_a_watch_the_server_ends_goes_on_from_the_last_version(
    kube: KubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither an object seen before the server ended the watch comes again, nor is a change
    made in between lost."""
    monkeypatch.setattr(watches, "SERVER_TIMEOUT_SECONDS", 1)
    async with namespace(kube) as ns:
        seen = Seen(ns)
        watch = Watch("v1", "ConfigMap", OWNED, Since.NOW, seen.handle)
        async with running(follow(kube, watch, await watch.starting_version(kube))):
            for index in range(3):
                await owned_config_map(kube, ns, f"cm-{index}")
                await asyncio.sleep(1.5)  # the server ends the watch meanwhile
            await until(lambda: len(seen.events) >= 3, timeout=10)
            await asyncio.sleep(1.5)
        assert seen.events == [("ADDED", f"cm-{index}") for index in range(3)]
