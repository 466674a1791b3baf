"""Polling helpers for tests against live servers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], timeout: float = 30.0, interval: float = 0.25
) -> T:
    """Await ``probe`` until it returns a truthy value (returned) or raises no AssertionError."""
    deadline = time.monotonic() + timeout
    last_error: AssertionError | None = None
    while True:
        try:
            result = await probe()
            if result:
                return result
        except AssertionError as error:
            last_error = error
        if time.monotonic() > deadline:
            if last_error is not None:
                raise last_error
            raise AssertionError(f"not true within {timeout} s (last value: {result!r})")
        await asyncio.sleep(interval)


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Let the event loop's other tasks run until ``condition()`` holds: for state that a task
    of this test process changes, which no server needs asking about."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(work: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run ``work`` in the background while the block runs, and cancel it after."""
    task = asyncio.create_task(work)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
