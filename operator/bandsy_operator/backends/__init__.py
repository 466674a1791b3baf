"""Database backends behind one small interface: the reconcilers never know which one they use."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class AdminCredentials:
    username: str
    password: str


# Called on every connect, so a rotated admin Secret is picked up without a restart.
AdminLoader = Callable[[], Awaitable[AdminCredentials]]


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    tls: str  # postgres: an sslmode; redis/mongo: "require" or "disable"
    admin: AdminLoader

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Account:
    """One user of one service on one server, with what it may touch."""

    user: str
    database: str = ""  # postgres / mongo
    key_prefix: str = ""  # redis
    extensions: tuple[str, ...] = ()
    # postgres: where a backup of ``database`` is restored to be verified (SPEC §11), owned by
    # the same role; "" when the environment takes no backups.
    scratch_database: str = ""
    # postgres: where a mirror fills the next copy of ``database``; "" without a mirror.
    mirror_database: str = ""


class BackendUnavailableError(Exception):
    """The server cannot be used right now; the message carries no secret. ``reason`` is the
    DatabaseReady condition's reason while it lasts."""

    reason = "DatabaseUnreachable"


class ServerUnreachableError(BackendUnavailableError):
    """No connection: down, unresolvable, timed out."""


class LoginRefusedError(BackendUnavailableError):
    """The server answered and refused these credentials."""


class StatementRefusedError(BackendUnavailableError):
    """The server refused what the spec asks for (an extension it does not have, say)."""

    reason = "DatabaseRefused"


class PermissionDeniedError(BackendUnavailableError):
    """The admin lacks a privilege the work needs; the message names both."""

    reason = "DatabasePermissionDenied"


class ServerReadOnlyError(BackendUnavailableError):
    """The server takes no writes (a replica, say after a failover); a later try may reach the
    new primary."""

    reason = "DatabaseReadOnly"


class Backend(Protocol):
    name: str

    async def ensure(self, server: Server, account: Account, password: str) -> list[str]:
        """Create or repair the user (and its database) so ``password`` logs in; idempotent.
        Returns what had to be repaired (empty when everything was already in place)."""
        ...

    async def retain(self, server: Server, account: Account) -> None:
        """Keep the data, stop the user from logging in."""
        ...

    async def delete(self, server: Server, account: Account, keep_user: bool = False) -> None:
        """Drop the data, and the user unless another environment still uses it."""
        ...

    async def close(self) -> None:
        """Release pooled connections (the operator is stopping)."""
        ...


class Backends(Mapping[str, Backend]):
    """The backends by name, each made (and its driver imported) when first used: an operator
    whose services use no Redis or MongoDB never loads those drivers (13 MiB of its memory)."""

    def __init__(self, factories: Mapping[str, Callable[[], Backend]]) -> None:
        self._factories = dict(factories)
        self._made: dict[str, Backend] = {}

    def __getitem__(self, name: str) -> Backend:
        if name not in self._made:
            self._made[name] = self._factories[name]()
        return self._made[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)

    def __len__(self) -> int:
        return len(self._factories)

    async def close(self) -> None:
        """Close those made: the others hold no connection (and were never imported)."""
        await asyncio.gather(*(backend.close() for backend in self._made.values()))
