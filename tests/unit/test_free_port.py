"""Ports for the local servers: outside the range outgoing connections take theirs from."""

from __future__ import annotations

import socket

from bandsy_dev.procs import _ephemeral_start, free_port


def test_free_ports_are_below_the_ephemeral_range_and_never_the_same_twice() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(1024 <= port < _ephemeral_start() for port in ports)
    for port in ports[:20]:  # and free: a server can bind each on every address
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("", port))
