"""Host names of declared egress (SPEC §12) to the addresses a NetworkPolicy can name.

Resolved again on a reconcile that reads everything (start-up, resync, after an error), else
answered from memory, so a busy service costs no lookups. A failed lookup keeps the last
answer: an outage of DNS must not cut a service off from what it reached a minute ago."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket

log = logging.getLogger(__name__)


class HostResolver:
    def __init__(self) -> None:
        self._known: dict[str, tuple[str, ...]] = {}

    async def addresses(self, host: str, fresh: bool) -> tuple[str, ...]:
        """The addresses of ``host``, as CIDRs of one address each, sorted; () when it has
        never resolved."""
        if not fresh and host in self._known:
            return self._known[host]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, None, type=socket.SOCK_STREAM
            )
        except OSError as error:
            log.warning(
                "egress host %s does not resolve (%s): keeping its last addresses", host, error
            )
            return self._known.get(host, ())
        found = {ipaddress.ip_address(info[4][0]) for info in infos}
        resolved = tuple(
            str(ipaddress.ip_network(a)) for a in sorted(found, key=lambda a: (a.version, a))
        )
        self._known[host] = resolved
        return resolved
