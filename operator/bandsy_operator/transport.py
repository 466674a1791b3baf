"""The HTTP transport to the API server: httpx's own, over streams that find their socket once.

Before and after every request, httpcore's pool asks each idle connection whether the server
closed it: a poll of the connection's socket. anyio gives the socket only through its typed
attributes, which a TLS stream builds anew as a dict of every attribute on each lookup; with a
reconcile's thirty-odd connections that lookup was 8 % of the operator's CPU (py-spy, large
converge). Here each connection looks its socket up once, when it is made.
"""

# The streams' and backend's signatures, timeouts included, are httpcore's interface.
# ruff: noqa: ASYNC109

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore2
import httpx2 as httpx
from httpcore2 import SOCKET_OPTION


def _readable(sock: socket.socket | None) -> bool:
    """Data (or the end of the stream) waits on ``sock``. A socket that is gone counts as
    readable: its next read returns the end of the stream, so the pool drops its connection."""
    if sock is None or sock.fileno() < 0:
        return True
    poll = select.poll()
    poll.register(sock, select.POLLIN)
    return bool(poll.poll(0))


class _SocketKeepingStream(httpcore2.AsyncNetworkStream):
    """anyio's stream, with the idle probe answered from the socket it had when made."""

    def __init__(self, stream: httpcore2.AsyncNetworkStream) -> None:
        self._stream = stream
        self._socket: socket.socket | None = stream.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        secured = await self._stream.start_tls(ssl_context, server_hostname, timeout)
        return _SocketKeepingStream(secured)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return _readable(self._socket)
        return self._stream.get_extra_info(info)


class _SocketKeepingBackend(httpcore2.AsyncNetworkBackend):
    def __init__(self) -> None:
        self._backend = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _SocketKeepingStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        stream = await self._backend.connect_unix_socket(path, timeout, socket_options)
        return _SocketKeepingStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def api_transport(
    verify: ssl.SSLContext | str | bool, connections: int
) -> httpx.AsyncHTTPTransport:
    """httpx's transport, ``connections`` kept alive, over socket-keeping streams."""
    transport = httpx.AsyncHTTPTransport(verify=verify)
    # httpx takes no network backend: its pool is replaced by one made as it makes it.
    transport._pool = httpcore2.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(verify=verify),
        max_connections=connections,
        max_keepalive_connections=connections,
        keepalive_expiry=httpx.Limits().keepalive_expiry,
        network_backend=_SocketKeepingBackend(),
    )
    return transport
