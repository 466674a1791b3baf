"""The work queue's timers, and retrying what waited for a server once it answers again."""

from __future__ import annotations

import asyncio

import httpx2 as httpx
import pytest
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import Status

from bandsy_operator.kube import is_unreachable
from bandsy_operator.workqueue import AwaitingServer, WorkQueue, run_workers


async def drain(queue: WorkQueue[str]) -> list[str]:
    """Keys queued right now, in order, each marked done."""
    keys = []
    while queue.depth:
        key = await asyncio.wait_for(queue.get(), timeout=1)
        queue.done(key)
        keys.append(key)
    return keys


async def test_a_retry_waits_for_its_backoff() -> None:
    queue: WorkQueue[str] = WorkQueue(base_delay=0.05, max_delay=1.0)
    assert queue.retry("a") == 0.05
    assert queue.retry("a") == 0.1
    assert queue.depth == 0
    await asyncio.sleep(0.2)
    assert await drain(queue) == ["a"]
    queue.forget("a")
    assert queue.retry("a") == 0.05  # success resets the backoff


async def test_expedite_runs_now_and_drops_the_pending_timer() -> None:
    queue: WorkQueue[str] = WorkQueue(base_delay=0.2)
    queue.retry("a")
    queue.expedite("a")
    assert await drain(queue) == ["a"]
    await asyncio.sleep(0.3)
    assert queue.depth == 0, "the cancelled backoff timer added the key again"


async def test_news_within_the_settle_time_costs_one_run() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for _ in range(3):
        queue.add_soon("a", 0.1)
    assert queue.depth == 0
    await asyncio.sleep(0.2)
    assert await drain(queue) == ["a"]
    await asyncio.sleep(0.2)
    assert queue.depth == 0


async def test_news_about_a_waiting_key_joins_its_run_and_a_running_key_runs_again() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.add_soon("a", 0.05)  # waiting: that run will see the news
    assert await drain(queue) == ["a"]
    await asyncio.sleep(0.1)
    assert queue.depth == 0
    queue.add("b")
    running = await queue.get()
    queue.add_soon("b", 0.05)  # running: it started before the news, so once more, soon
    queue.add_soon("b", 0.05)
    queue.done(running)
    await asyncio.sleep(0.1)
    assert await drain(queue) == ["b"]
    await asyncio.sleep(0.1)
    assert queue.depth == 0


async def test_keys_awaiting_a_server_are_retried_when_it_answers() -> None:
    now = [100.0]
    queue: WorkQueue[str] = WorkQueue(base_delay=10.0)
    awaiting: AwaitingServer[str] = AwaitingServer(queue, min_interval=2.0, clock=lambda: now[0])
    for key in ("a", "b", "c"):
        queue.retry(key)
        awaiting.failed(key)
    # "b" got through: the server is back; it needs no second run, the others run now.
    assert awaiting.answered(done="b") == 2
    assert sorted(await drain(queue)) == ["a", "c"]
    assert awaiting.answered() == 0  # each outage is answered once

    # A server failing some requests while answering others gets one wave per interval.
    queue.retry("a")
    awaiting.failed("a")
    now[0] += 1.0
    assert awaiting.answered() == 0
    assert queue.depth == 0  # "a" keeps its own backoff
    now[0] += 1.0
    assert awaiting.answered() == 1
    assert await drain(queue) == ["a"]


def api_error(code: int) -> ApiError:
    return ApiError(status=Status(code=code, message=f"status {code}"))


@pytest.mark.parametrize(
    ("error", "unreachable"),
    [
        (httpx.ConnectError("connection refused"), True),
        (httpx.ReadTimeout("timed out"), True),
        (api_error(503), True),
        (api_error(502), True),
        (api_error(429), False),
        (api_error(500), False),
        (api_error(404), False),
        (api_error(409), False),
        (api_error(422), False),
        (ValueError("a bug"), False),
    ],
)
def test_unreachable_means_the_server_did_not_answer(error: Exception, unreachable: bool) -> None:
    assert is_unreachable(error) is unreachable


async def test_jitter_takes_up_to_its_fraction_off_each_delay() -> None:
    queue: WorkQueue[str] = WorkQueue(base_delay=1.0, max_delay=8.0, jitter=0.5)
    delays = [queue.retry("a") for _ in range(200)]
    assert all(4.0 <= d <= 8.0 for d in delays[3:]), delays
    assert len({round(d, 3) for d in delays[3:]}) > 100  # spread, not one value


async def test_a_worker_cancelled_on_its_own_ends_every_worker() -> None:
    """kopf cancels the tasks it did not start when it exits. With a plain ``gather`` one
    cancelled worker ended ``run_workers`` and left the others reconciling, past the
    controller's stop and the closing of its API client."""
    queue: WorkQueue[str] = WorkQueue(base_delay=0.05, max_delay=1.0)
    started: list[str] = []
    ended: list[str] = []
    all_started = asyncio.Event()

    async def handle(key: str) -> None:
        started.append(key)
        if len(started) == 3:
            all_started.set()
        try:
            await asyncio.sleep(10)
        finally:
            ended.append(key)

    for key in ("a", "b", "c"):
        queue.add(key)
    others = asyncio.all_tasks()
    workers = asyncio.create_task(run_workers(queue, handle, 3))
    await asyncio.wait_for(all_started.wait(), timeout=5)
    one = next(t for t in asyncio.all_tasks() - others if t is not workers)
    one.cancel()
    with pytest.raises(asyncio.CancelledError):
        await workers
    assert sorted(ended) == ["a", "b", "c"]
    assert asyncio.all_tasks() - others == set()
