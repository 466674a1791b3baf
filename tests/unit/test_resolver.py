"""Egress host names to NetworkPolicy addresses, with the system's real resolver."""

from __future__ import annotations

import pytest

from bandsy_operator.resolver import HostResolver

pytestmark = pytest.mark.asyncio


async def test_a_host_resolves_to_single_address_networks() -> None:
    resolver = HostResolver()
    assert "127.0.0.1/32" in await resolver.addresses("localhost", fresh=True)


async def test_a_failed_lookup_keeps_the_last_answer() -> None:
    resolver = HostResolver()
    # .invalid never resolves (RFC 6761): a lookup that fails for real.
    assert await resolver.addresses("gone.invalid", fresh=True) == ()
    resolver._known["gone.invalid"] = ("192.0.2.1/32",)  # what it resolved to before
    assert await resolver.addresses("gone.invalid", fresh=True) == ("192.0.2.1/32",)
    assert await resolver.addresses("gone.invalid", fresh=False) == ("192.0.2.1/32",)
