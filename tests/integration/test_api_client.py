"""The operator's API client against the real API server: its connections outlive a burst."""

from __future__ import annotations

import asyncio

import pytest

from bandsy_operator.kube import API_CONNECTIONS, KubeApi, ObjectRef

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def test_every_connection_of_a_burst_stays_open_for_the_next(
    servers: dict[str, str],
) -> None:
    """A reconcile sends many requests at once; a connection closed after each would cost a
    TLS handshake per request on both sides."""
    api = KubeApi.from_kubeconfig(servers["KUBECONFIG"])
    pool = api.client._client._client._transport._pool  # type: ignore[attr-defined]
    try:
        ref = ObjectRef("v1", "Namespace", "", "default")
        await asyncio.gather(*(api.get(ref) for _ in range(3 * API_CONNECTIONS)))
        opened = {id(connection) for connection in pool.connections}
        assert len(opened) == API_CONNECTIONS
        await asyncio.gather(*(api.get(ref) for _ in range(3 * API_CONNECTIONS)))
        assert {id(connection) for connection in pool.connections} == opened
    finally:
        await api.close()
