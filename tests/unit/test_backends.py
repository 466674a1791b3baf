"""The backends registry: each backend is made, and its driver imported, only when used."""

from __future__ import annotations

import subprocess
import sys

from bandsy_operator.backends import Account, Backend, Backends, Server


class Made:
    name = "made"

    def __init__(self) -> None:
        self.closed = False

    async def ensure(self, server: Server, account: Account, password: str) -> list[str]:
        return []

    async def retain(self, server: Server, account: Account) -> None:
        return None

    async def delete(self, server: Server, account: Account, keep_user: bool = False) -> None:
        return None

    async def close(self) -> None:
        self.closed = True


async def test_a_backend_is_made_once_and_only_when_used() -> None:
    calls: list[str] = []
    made: list[Made] = []

    def factory(name: str) -> Backend:
        calls.append(name)
        made.append(Made())
        return made[-1]

    backends = Backends(
        {"postgres": lambda: factory("postgres"), "redis": lambda: factory("redis")}
    )
    assert sorted(backends) == ["postgres", "redis"]
    assert len(backends) == 2
    assert calls == []
    first = backends["redis"]
    assert backends["redis"] is first
    assert calls == ["redis"]
    await backends.close()  # closes the one made, and makes no other to close it
    assert calls == ["redis"]
    assert [backend.closed for backend in made] == [True]


def test_the_operator_starts_without_the_redis_and_mongodb_drivers() -> None:
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, bandsy_operator.runner, bandsy_operator.handlers, "
            "bandsy_operator.controller as c; "
            "print(sorted(m for m in ('redis', 'motor', 'pymongo') if m in sys.modules))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert loaded == "[]"
