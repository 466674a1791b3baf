"""Awaiting several things at once without leaving any of them behind."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def all_of(*awaitables: Awaitable[T]) -> list[T]:
    """Their results, run together, as ``asyncio.gather`` gives them. But when one fails, or the
    caller is cancelled, the others are cancelled and awaited before the error goes on:
    ``gather`` leaves them running, and a reconcile that failed in one environment went on
    writing in the others, past its own retry and past the operator's shutdown."""
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
