"""Redis through redis-py asyncio: one ACL user per service account, confined to its key prefix."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, ConnectionError, TimeoutError

from . import Account, LoginRefusedError, Server, ServerUnreachableError

# Everything but administration and dangerous commands, on the account's keys and channels.
COMMAND_RULES = ("+@all", "-@admin", "-@dangerous")
CONNECT_TIMEOUT = 10.0


def password_hash(password: str) -> str:
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


def acl_rules(account: Account, password: str) -> list[str]:
    prefix = account.key_prefix
    return [
        "reset",
        "on",
        f"#{password_hash(password)}",
        f"~{prefix}*",
        f"&{prefix}*",
        *COMMAND_RULES,
    ]


async def _command(client: aioredis.Redis, *args: str) -> Any:
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


async def _getuser(client: aioredis.Redis, user: str) -> dict[str, Any]:
    found: Any = await client.acl_getuser(user)
    return dict(found or {})


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisBackend:
    name = "redis"

    async def close(self) -> None:
        """Nothing pooled: each operation opens and closes its own connection."""

    @asynccontextmanager
    async def _connect(
        self, server: Server, user: str = "", password: str = ""
    ) -> AsyncIterator[aioredis.Redis]:
        if not user:
            admin = await server.admin()
            user, password = admin.username, admin.password
        client = aioredis.Redis(
            host=server.host,
            port=server.port,
            username=user,
            password=password,
            ssl=server.tls == "require",
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=CONNECT_TIMEOUT,
        )
        try:
            await client.ping()
            yield client
        except AuthenticationError:
            raise LoginRefusedError(
                f"redis {server.address}: authentication failed for {user!r}"
            ) from None
        except (ConnectionError, TimeoutError, OSError) as error:
            raise ServerUnreachableError(f"redis {server.address} unreachable: {error}") from None
        finally:
            await client.aclose()

    async def _matches(self, client: aioredis.Redis, account: Account, password: str) -> bool:
        """The user exists exactly as ``acl_rules`` would leave it."""
        found = await _getuser(client, account.user)
        if not found:
            return False
        flags = {_text(f) for f in found.get("flags", [])}
        passwords = [_text(p) for p in found.get("passwords", [])]
        keys = _text(found.get("keys", ""))
        channels = _text(found.get("channels", ""))
        commands = _text(found.get("commands", ""))
        prefix = account.key_prefix
        return (
            "on" in flags
            and passwords == [password_hash(password)]
            and keys in (f"~{prefix}*", [f"~{prefix}*"])
            and channels in (f"&{prefix}*", [f"&{prefix}*"])
            and commands == " ".join(COMMAND_RULES)
        )

    async def ensure(self, server: Server, account: Account, password: str) -> list[str]:
        async with self._connect(server) as client:
            if await self._matches(client, account, password):
                return []
            existed = bool(await _getuser(client, account.user))
            await _command(client, "ACL", "SETUSER", account.user, *acl_rules(account, password))
            await self._save(client)
        return [f"{'repaired' if existed else 'created'} ACL user {account.user}"]

    async def _save(self, client: aioredis.Redis) -> None:
        config = await client.config_get("aclfile")
        if _text(config.get("aclfile", "")):
            await _command(client, "ACL", "SAVE")

    async def retain(self, server: Server, account: Account) -> None:
        async with self._connect(server) as client:
            if await _getuser(client, account.user):
                await _command(client, "ACL", "SETUSER", account.user, "off")
                await self._save(client)

    async def delete(self, server: Server, account: Account, keep_user: bool = False) -> None:
        async with self._connect(server) as client:
            async for key in client.scan_iter(match=f"{account.key_prefix}*", count=500):
                await client.unlink(key)
            if not keep_user:
                await _command(client, "ACL", "DELUSER", account.user)
                await self._save(client)

    async def can_login(self, server: Server, account: Account, password: str) -> bool:
        try:
            async with self._connect(server, account.user, password):
                return True
        except LoginRefusedError:
            return False
