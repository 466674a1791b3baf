"""MongoDB through motor: one user per service account with readWrite on its own database.

The user lives in the service's database (its ``authSource``). Retain removes the user and keeps
the data; Delete drops the database too. Converged accounts cost a ``usersInfo`` and a login.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from motor.motor_asyncio import AsyncIOMotorClient
from pymongo.errors import OperationFailure, ServerSelectionTimeoutError

from . import Account, LoginRefusedError, Server, ServerUnreachableError

TIMEOUT_MS = 10_000
AUTH_FAILED = 18  # MongoDB's AuthenticationFailed code
NOT_IMPLEMENTED = 238

log = logging.getLogger(__name__)


def _roles(account: Account) -> list[dict[str, str]]:
    return [{"role": "readWrite", "db": account.database}]


async def _user_command(database: Any, command: str, account: Account, password: str) -> None:
    """createUser / updateUser with readWrite on the account's database. Servers that speak the
    protocol without authorization (FerretDB 1.x) refuse ``roles``; they get the user alone."""
    try:
        await database.command(command, account.user, pwd=password, roles=_roles(account))
    except OperationFailure as error:
        if error.code != NOT_IMPLEMENTED or "roles" not in str(error):
            raise
        log.warning("the MongoDB server has no roles; %s gets a user without them", account.user)
        await database.command(command, account.user, pwd=password, roles=[])


class MongoBackend:
    name = "mongo"

    async def close(self) -> None:
        """Nothing pooled: each operation opens and closes its own connection."""

    @asynccontextmanager
    async def _client(
        self, server: Server, user: str = "", password: str = "", auth_source: str = "admin"
    ) -> AsyncIterator[Any]:
        if not user:
            admin = await server.admin()
            user, password = admin.username, admin.password
        client: Any = AsyncIOMotorClient(
            host=server.host,
            port=server.port,
            username=user,
            password=password,
            authSource=auth_source,
            tls=server.tls == "require",
            serverSelectionTimeoutMS=TIMEOUT_MS,
            connectTimeoutMS=TIMEOUT_MS,
        )
        try:
            yield client
        except ServerSelectionTimeoutError as error:
            raise ServerUnreachableError(f"mongo {server.address} unreachable: {error}") from None
        except OperationFailure as error:
            if error.code == AUTH_FAILED:
                raise LoginRefusedError(
                    f"mongo {server.address}: authentication failed for {user!r}"
                ) from None
            raise
        finally:
            client.close()

    async def can_login(self, server: Server, account: Account, password: str) -> bool:
        try:
            async with self._client(server, account.user, password, account.database) as client:
                await client[account.database].list_collection_names()
        except LoginRefusedError:
            return False
        return True

    async def ensure(self, server: Server, account: Account, password: str) -> list[str]:
        async with self._client(server) as client:
            database = client[account.database]
            found = await database.command("usersInfo", account.user)
            if not found.get("users"):
                await _user_command(database, "createUser", account, password)
                return [f"created user {account.user}"]
        if await self.can_login(server, account, password):
            return []
        async with self._client(server) as client:
            await _user_command(client[account.database], "updateUser", account, password)
        return [f"reset password of user {account.user}"]

    async def retain(self, server: Server, account: Account) -> None:
        async with self._client(server) as client:
            await self._drop_user(client, account)

    async def delete(self, server: Server, account: Account, keep_user: bool = False) -> None:
        async with self._client(server) as client:
            if not keep_user:
                await self._drop_user(client, account)
            await client.drop_database(account.database)

    @staticmethod
    async def _drop_user(client: Any, account: Account) -> None:
        try:
            await client[account.database].command("dropUser", account.user)
        except OperationFailure as error:
            if "not found" not in str(error).lower():
                raise
