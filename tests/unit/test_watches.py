"""How a watch of the objects we own goes on when the server has forgotten its version (410
Gone), or a handler fails: against a server that answers from a script. The real API server's
side is in tests/integration/test_watches.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import Status

from bandsy_operator.kube import Manifest
from bandsy_operator.watches import OWNED, Since, Watch, follow


def config_map(name: str, version: str) -> Manifest:
    return {"kind": "ConfigMap", "metadata": {"name": name, "resourceVersion": version}}


class ForgetfulServer:
    """Has every version from 100 on, and ConfigMaps ``a`` (version 100) and ``b`` (101)."""

    def __init__(self) -> None:
        self.asked: list[str | None] = []

    async def watch(
        self, api_version: str, kind: str, labels: dict[str, str], version: str | None, _: int
    ) -> AsyncIterator[tuple[str, Manifest]]:
        self.asked.append(version)
        if version is not None and int(version) < 100:
            raise ApiError(status=Status(code=410, reason="Expired", message="too old"))
        if version is None:
            yield "ADDED", config_map("a", "100")
        if version is None or int(version) < 101:
            yield "ADDED", config_map("b", "101")
        await asyncio.Event().wait()  # the rest of the watch: nothing happens


async def followed(server: Any, watch: Watch, version: str | None) -> None:
    task = asyncio.create_task(follow(server, watch, version))
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_forgotten_version_starts_again_with_every_object() -> None:
    server, seen = ForgetfulServer(), []
    watch = Watch("v1", "ConfigMap", OWNED, Since.NOW, lambda t, b: seen.append(b["metadata"]))
    await followed(server, watch, "7")
    assert server.asked == ["7", None]
    assert [m["name"] for m in seen] == ["a", "b"]


async def test_a_failing_handler_does_not_end_the_watch() -> None:
    server, seen = ForgetfulServer(), []

    def handle(event_type: str, body: Manifest) -> None:
        if body["metadata"]["name"] == "a":
            raise KeyError("a bug")
        seen.append(body["metadata"]["name"])

    await followed(server, Watch("v1", "ConfigMap", OWNED, Since.EVERYTHING, handle), None)
    assert seen == ["b"]


def test_only_a_watch_from_now_asks_for_the_collections_version() -> None:
    class NoServer:
        async def collection_version(self, *_: Any) -> str:
            return "42"

    api: Any = NoServer()
    now = Watch("v1", "ConfigMap", OWNED, Since.NOW, lambda t, b: None)
    everything = Watch("v1", "ConfigMap", OWNED, Since.EVERYTHING, lambda t, b: None)
    assert asyncio.run(now.starting_version(api)) == "42"
    assert asyncio.run(everything.starting_version(api)) is None
