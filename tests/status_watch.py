"""Every status a service goes through, as a watch sees it: how many writes a change costs."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from bandsy_operator.kube import BandsyServiceResource, KubeApi, ObjectRef
from waiting import running


@contextlib.asynccontextmanager
async def statuses_written(kube: KubeApi, name: str) -> AsyncIterator[list[dict[str, Any]]]:
    """Every status the service ``name`` has while the block runs, from a watch that starts
    before the block (at the version of an object written just now)."""
    marker = await kube.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"watch-{uuid.uuid4().hex[:6]}", "namespace": "default"},
        }
    )
    seen: list[dict[str, Any]] = []

    async def watch() -> None:
        async for _, obj in kube.client.watch(
            BandsyServiceResource,
            fields={"metadata.name": name},
            resource_version=marker["metadata"]["resourceVersion"],
        ):
            status = obj.to_dict().get("status") or {}  # type: ignore[no-untyped-call]
            if not seen or seen[-1] != status:
                seen.append(status)

    try:
        async with running(watch()):
            yield seen
    finally:
        await kube.delete(ObjectRef.of(marker))


def condition_of(status: Mapping[str, Any], type_: str) -> dict[str, Any]:
    """The service-wide condition ``type_`` ({} when it has none)."""
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})
