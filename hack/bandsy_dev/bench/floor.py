"""The floor: the operator's final objects applied directly and its SQL run directly, by the same
number of concurrent workers, with no reading, comparing, status or bookkeeping.

The objects are the operator's own output, read back from the API server, moved to fresh
namespaces (``floor-<namespace>``) so nothing exists yet; the SQL is what a converged account
needs (role with a SCRAM verifier, owned database, PUBLIC revoked), for fresh ``floor_`` names.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from bandsy_operator.backends.postgres import ROLE_ATTRIBUTES, quote_identifier, quote_literal
from bandsy_operator.backends.scram import scram_sha256_verifier
from bandsy_operator.kube import KubeApi, Manifest, ObjectRef
from bandsy_operator.reconcile.databases import AccountRef

from .probes import wait_until

PREFIX = "floor-"
SQL_PREFIX = "floor_"
_SERVER_FIELDS = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields")


@dataclass
class Unit:
    """What one worker does for one service environment: its SQL, then its objects."""

    accounts: list[AccountRef] = field(default_factory=list)
    objects: list[Manifest] = field(default_factory=list)


@dataclass
class Workload:
    namespaces: list[Manifest]
    environment_objects: list[Manifest]
    units: list[Unit]

    @property
    def object_count(self) -> int:
        units = sum(len(u.objects) for u in self.units)
        return len(self.namespaces) + len(self.environment_objects) + units

    @property
    def account_count(self) -> int:
        return sum(len(u.accounts) for u in self.units)

    def repetition(self, index: int) -> Workload:
        """The same objects in namespaces of their own (``floor<index>-<namespace>``): for a
        while after a namespace is deleted, the API server checks every create in a namespace of
        that name against storage (namespace lifecycle admission), a GET that a first run into
        new namespaces does not pay."""
        if index == 0:
            return self
        prefix = f"floor{index}-"

        def moved(obj: Manifest) -> Manifest:
            meta = dict(obj["metadata"])
            key = "name" if obj["kind"] == "Namespace" else "namespace"
            if meta.get(key, "").startswith(PREFIX):
                meta[key] = prefix + meta[key].removeprefix(PREFIX)
            return {**obj, "metadata": meta}

        return Workload(
            [moved(o) for o in self.namespaces],
            [moved(o) for o in self.environment_objects],
            [Unit(u.accounts, [moved(o) for o in u.objects]) for u in self.units],
        )


def relocated(live: Manifest, namespaces: dict[str, str]) -> Manifest:
    """``live`` as a manifest for the floor's namespace, without server-set fields."""
    manifest = {k: v for k, v in live.items() if k != "status"}
    # The ownerReferences stay: the owners are cluster-scoped, and the garbage collector's work
    # for them is part of applying these objects.
    meta = {k: v for k, v in live["metadata"].items() if k not in _SERVER_FIELDS}
    if manifest["kind"] == "Namespace":
        meta["name"] = namespaces[meta["name"]]
    elif meta.get("namespace"):
        meta["namespace"] = namespaces[meta["namespace"]]
    if manifest["kind"] == "Service":  # the cluster IP is allocated, not applied
        manifest["spec"] = {
            k: v for k, v in manifest["spec"].items() if k not in ("clusterIP", "clusterIPs")
        }
    manifest["metadata"] = meta
    return manifest


async def snapshot(
    api: KubeApi,
    environments: list[dict[str, Any]],
    services: list[dict[str, Any]],
    credential_namespace: str,
) -> Workload:
    """The operator's converged output, from the inventories in its custom resources' status."""
    namespace_of = {
        e["metadata"]["name"]: e["spec"].get("namespace") or e["metadata"]["name"]
        for e in environments
    }
    namespaces = {ns: PREFIX + ns for ns in [*namespace_of.values(), credential_namespace]}

    async def fetch(refs: Iterable[ObjectRef]) -> list[Manifest]:
        found = await asyncio.gather(*(api.get(ref) for ref in refs))
        return [relocated(obj, namespaces) for obj in found if obj is not None]

    env_refs = [
        ObjectRef.parse(entry.partition("|")[2])
        for env in environments
        for entry in (env.get("status") or {}).get("inventory") or []
    ]
    env_objects = await fetch(env_refs)
    namespace_objects = [o for o in env_objects if o["kind"] == "Namespace"]
    namespace_objects.append(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespaces[credential_namespace]},
        }
    )
    others = [o for o in env_objects if o["kind"] != "Namespace"]

    # The central credential store: one Secret per account, written with the account.
    store = {
        s["metadata"]["name"]: s
        for s in await api.list("v1", "Secret", namespace=credential_namespace)
    }
    units: list[Unit] = []
    for service in services:
        status = service.get("status") or {}
        accounts = [AccountRef.parse(a) for a in status.get("databases") or []]
        by_env: dict[str, Unit] = {}
        for account in accounts:
            by_env.setdefault(account.env, Unit()).accounts.append(account)
        for entry in status.get("inventory") or []:
            env, _, ref = entry.partition("|")
            by_env.setdefault(env, Unit()).objects += await fetch([ObjectRef.parse(ref)])
        units += by_env.values()
    credential_objects = [relocated(s, namespaces) for s in store.values()]
    # Credential Secrets belong to the accounts' units; spread them so each unit writes its own.
    for unit, secret in zip((u for u in units if u.accounts), credential_objects, strict=False):
        unit.objects.insert(0, secret)
    return Workload(namespace_objects, others, units)


def account_sql(account: AccountRef, password: str) -> list[str]:
    role = quote_identifier(SQL_PREFIX + account.user)
    database = quote_identifier(SQL_PREFIX + account.scope)
    verifier = quote_literal(scram_sha256_verifier(password))
    return [
        f"CREATE ROLE {role} {ROLE_ATTRIBUTES} PASSWORD {verifier}",
        f"CREATE DATABASE {database} OWNER {role}",
        f"REVOKE ALL ON DATABASE {database} FROM PUBLIC",
    ]


async def run(api: KubeApi, pool: asyncpg.Pool, workload: Workload, workers: int) -> float:
    """Seconds to apply every object and run every statement with ``workers`` workers."""
    started = time.perf_counter()
    limit = asyncio.Semaphore(workers)

    async def bounded_apply(obj: Manifest) -> None:
        async with limit:
            await api.apply(obj)

    async def unit_work(unit: Unit) -> None:
        async with limit:
            for account in unit.accounts:
                async with pool.acquire() as conn:
                    for statement in account_sql(account, "floor-password-" + account.user):
                        await conn.execute(statement)
            for obj in unit.objects:
                await api.apply(obj)

    await asyncio.gather(*(bounded_apply(ns) for ns in workload.namespaces))
    await asyncio.gather(*(bounded_apply(obj) for obj in workload.environment_objects))
    await asyncio.gather(*(unit_work(unit) for unit in workload.units))
    return time.perf_counter() - started


async def clean_up(api: KubeApi, pool: asyncpg.Pool, workload: Workload) -> None:
    """Remove the floor's namespaces, databases and roles (not timed); returns once the
    namespace controller is done, so its deletions are not counted as anyone's idle cost."""
    refs = [ObjectRef("v1", "Namespace", "", ns["metadata"]["name"]) for ns in workload.namespaces]
    for ref in refs:
        await api.delete(ref)
    async with pool.acquire() as conn:
        for unit in workload.units:
            for account in unit.accounts:
                await conn.execute(
                    f"DROP DATABASE IF EXISTS {quote_identifier(SQL_PREFIX + account.scope)}"
                )
                await conn.execute(
                    f"DROP ROLE IF EXISTS {quote_identifier(SQL_PREFIX + account.user)}"
                )

    async def gone() -> bool:
        return all([await api.get(ref) is None for ref in refs])

    await wait_until(gone, 300, "floor namespaces deleted")
