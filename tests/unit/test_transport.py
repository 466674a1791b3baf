"""The API server transport: its idle probe polls the socket found when a connection was made,
and a connection its server closed is not sent another request."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpcore2
import httpx2 as httpx

from bandsy_operator.transport import _SocketKeepingStream, api_transport


class _CountingStream(httpcore2.AsyncNetworkStream):
    """A stream that holds a real socket and counts the lookups of its attributes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lookups: list[str] = []

    def get_extra_info(self, info: str) -> Any:
        self.lookups.append(info)
        return self.sock if info == "socket" else None


def test_the_idle_probe_polls_the_socket_found_once() -> None:
    ours, peer = socket.socketpair()
    try:
        inner = _CountingStream(ours)
        stream = _SocketKeepingStream(inner)
        probes = [stream.get_extra_info("is_readable") for _ in range(5)]
        assert probes == [False] * 5
        peer.close()  # the server hangs up: the end of the stream waits to be read
        assert stream.get_extra_info("is_readable") is True
        assert inner.lookups == ["socket"]
    finally:
        ours.close()


def test_a_closed_socket_counts_as_readable() -> None:
    ours, peer = socket.socketpair()
    peer.close()
    stream = _SocketKeepingStream(_CountingStream(ours))
    ours.close()
    assert stream.get_extra_info("is_readable") is True


async def test_a_connection_its_server_closed_is_not_sent_the_next_request() -> None:
    """The server answers with keep-alive, then hangs up: the next request gets a new
    connection instead of failing on the dead one."""
    connections = 0

    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer_once, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with httpx.AsyncClient(transport=api_transport(False, 4)) as client:
        for _ in range(3):
            response = await client.get(f"http://127.0.0.1:{port}/")
            assert response.text == "ok"
            await asyncio.sleep(0.05)  # the hang-up reaches our socket
    server.close()
    await server.wait_closed()
    assert connections == 3
