from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from bandsy_operator.kube import KubeApi


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def kube(servers: dict[str, str]) -> AsyncIterator[KubeApi]:
    api = KubeApi.from_kubeconfig(servers["KUBECONFIG"])
    try:
        yield api
    finally:
        await api.close()
