"""A deduplicating, rate-limited work queue, as in controller-runtime.

A key is processed by one worker at a time; adding a key that is being processed marks it dirty
so it runs once more afterwards. Failures are retried with exponential backoff per key.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from .concurrently import all_of

Key = TypeVar("Key", bound=Hashable)


class WorkQueue(Generic[Key]):
    def __init__(
        self, base_delay: float = 0.5, max_delay: float = 60.0, jitter: float = 0.0
    ) -> None:
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._active: set[Key] = set()
        self._dirty: set[Key] = set()
        self._failures: dict[Key, int] = {}
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self.base_delay = base_delay
        self.max_delay = max_delay
        # Up to this fraction is taken off each delay at random, so keys that failed together
        # do not all retry together.
        self.jitter = jitter

    def add(self, key: Key) -> None:
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: Key, delay: float) -> None:
        """Add ``key`` in ``delay`` seconds; an earlier pending timer for it wins."""
        loop = asyncio.get_running_loop()
        pending = self._timers.get(key)
        if pending is not None:
            if pending.when() <= loop.time() + delay:
                return
            pending.cancel()

        def fire() -> None:
            self._timers.pop(key, None)
            self.add(key)

        self._timers[key] = loop.call_later(delay, fire)

    def add_soon(self, key: Key, delay: float) -> None:
        """Add ``key`` within ``delay`` seconds, so that more news about it in the meantime
        costs no extra run; nothing to do if it is waiting (that run will see the news)."""
        if key not in self._queued:
            self.add_after(key, delay)

    def retry(self, key: Key) -> float:
        """Schedule a retry with backoff; returns the delay."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay: float = min(self.base_delay * 2.0**failures, self.max_delay)
        delay *= 1.0 - self.jitter * random.random()
        self.add_after(key, delay)
        return delay

    def expedite(self, key: Key) -> None:
        """Process ``key`` now rather than when its pending timer fires."""
        pending = self._timers.pop(key, None)
        if pending is not None:
            pending.cancel()
        self.add(key)

    def forget(self, key: Key) -> None:
        """The key succeeded: its backoff starts again from the base."""
        self._failures.pop(key, None)

    @property
    def depth(self) -> int:
        """Keys waiting or being processed; zero means the operator is idle (timers aside)."""
        return len(self._queued | self._active | self._dirty)

    async def get(self) -> Key:
        key = await self._queue.get()
        self._queued.discard(key)
        self._active.add(key)
        return key

    def done(self, key: Key) -> None:
        self._active.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)


class AwaitingServer(Generic[Key]):
    """Keys whose last attempt failed because a server could not be reached.

    Their backoff grows while the server is away; once it answers again they are retried at
    once instead of when each one's backoff runs out (SPEC §9: converged 30 s after it returns).
    At most one such wave per ``min_interval``: a server that answers some requests and fails
    others is not hammered; the keys then keep their own backoff.
    """

    def __init__(
        self,
        queue: WorkQueue[Key],
        min_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queue = queue
        self.min_interval = min_interval
        self._clock = clock
        self._keys: set[Key] = set()
        self._last_wave = -math.inf

    def failed(self, key: Key) -> None:
        self._keys.add(key)

    def answered(self, done: Key | None = None) -> int:
        """The server answered (``done`` got through): retry every other waiting key now;
        returns how many."""
        if done is not None:
            self._keys.discard(done)
        now = self._clock()
        if not self._keys or now - self._last_wave < self.min_interval:
            return 0
        self._last_wave = now
        waiting, self._keys = self._keys, set()
        for key in sorted(waiting, key=str):
            self.queue.expedite(key)
        return len(waiting)


async def run_workers(
    queue: WorkQueue[Key],
    handle: Callable[[Key], Awaitable[None]],
    count: int,
) -> None:
    async def worker() -> None:
        while True:
            key = await queue.get()
            try:
                await handle(key)
            finally:
                queue.done(key)

    # Not gather: a worker cancelled on its own (kopf cancels, as it exits, every task it did
    # not start) would end gather and leave the other workers reconciling.
    await all_of(*(worker() for _ in range(count)))
