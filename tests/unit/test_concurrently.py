from __future__ import annotations

import asyncio

import pytest

from bandsy_operator.concurrently import all_of


async def fails() -> str:
    await asyncio.sleep(0.01)
    raise ValueError("the API server said no")


async def slow(ended: list[str]) -> str:
    try:
        await asyncio.sleep(10)
    finally:
        ended.append("slow")
    return "slow"


def test_the_results_in_order() -> None:
    async def value(v: str) -> str:
        await asyncio.sleep(0)
        return v

    assert asyncio.run(all_of(value("a"), value("b"))) == ["a", "b"]


def test_a_failure_cancels_the_others_and_waits_for_them() -> None:
    """asyncio.gather would raise at once and leave ``slow`` running."""
    ended: list[str] = []

    async def scenario() -> None:
        with pytest.raises(ValueError, match="said no"):
            await all_of(fails(), slow(ended))
        assert ended == ["slow"]

    asyncio.run(scenario())


def test_a_cancelled_caller_leaves_nothing_running() -> None:
    ended: list[str] = []

    async def scenario() -> None:
        caller = asyncio.create_task(all_of(slow(ended), slow(ended)))
        await asyncio.sleep(0.01)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert ended == ["slow", "slow"]

    asyncio.run(scenario())
