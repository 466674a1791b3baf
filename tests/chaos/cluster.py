"""What the chaos suite reads from the real servers: raw API requests, the API server's write
counters, database roles and logins, inventories and normalized snapshots of managed objects."""

from __future__ import annotations

import copy
import fnmatch
import ssl
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import asyncpg
import httpx2 as httpx
import redis.asyncio as aioredis
import yaml

from bandsy_dev.bench.probes import api_writes
from bandsy_dev.local_env import postgres_admin_args
from bandsy_operator.constants import (
    APPLIED_HASH_ANNOTATION,
    CONFIG_HASH_ANNOTATION,
    FIELD_MANAGER,
    MANAGED_BY_LABEL,
    SERVICE_LABEL,
)
from bandsy_operator.kube import KubeApi, ObjectRef
from conftest import KubectlRunner
from secrecy import decode

API = "bandsy.app/v1alpha1"
PLURALS = {"BandsyService": "bandsyservices", "BandsyEnvironment": "bandsyenvironments"}
# Every kind the operator writes into an environment's namespace, and the namespace itself.
NAMESPACED_KINDS = [
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("networking.k8s.io/v1", "Ingress"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("v1", "ResourceQuota"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
]
WRITTEN_RESOURCES = {
    "deployments",
    "services",
    "configmaps",
    "secrets",
    "networkpolicies",
    "ingresses",
    "namespaces",
    "rolebindings",
    "resourcequotas",
}
OURS = {MANAGED_BY_LABEL: FIELD_MANAGER}


class RawApi:
    """Requests exactly as a client sends them (kubectl's strict field validation, dry runs),
    as the admin of the kubeconfig, without a client library second-guessing the body."""

    def __init__(self, kubeconfig: str) -> None:
        config = yaml.safe_load(Path(kubeconfig).read_text())
        cluster = config["clusters"][0]["cluster"]
        context = ssl.create_default_context(cafile=cluster["certificate-authority"])
        token = config["users"][0]["user"]["token"]
        self.client = httpx.AsyncClient(
            base_url=cluster["server"],
            verify=context,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    async def create(self, kind: str, body: dict[str, Any], dry_run: bool) -> httpx.Response:
        params = {"fieldValidation": "Strict", **({"dryRun": "All"} if dry_run else {})}
        return await self.client.post(f"/apis/{API}/{PLURALS[kind]}", json=body, params=params)

    async def close(self) -> None:
        await self.client.aclose()


def write_requests(kubectl: KubectlRunner) -> dict[str, float]:
    """The API server's own count of write requests to the kinds the operator manages (objects,
    not their status): ``{resource: count}``, from ``/metrics`` read as the admin."""
    counts = dict.fromkeys(sorted(WRITTEN_RESOURCES), 0.0)
    for request, n in api_writes(kubectl).items():
        resource = request.partition(" ")[2]  # "VERB resource[/subresource]"
        if resource in counts:
            counts[resource] += n
    return counts


# -- PostgreSQL and Redis ------------------------------------------------------------------------


def pg_tls(servers: dict[str, str]) -> ssl.SSLContext:
    """verify-full against the harness CA: the projected credentials must work over real TLS."""
    return ssl.create_default_context(cafile=servers["BANDSY_PG_CA_FILE"])


async def admin_fetch(servers: dict[str, str], sql: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(**postgres_admin_args(servers), ssl=pg_tls(servers))
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def roles_and_databases(servers: dict[str, str], prefix: str) -> dict[str, Any]:
    """Roles and databases (with their owners) named ``prefix*`` (``*`` matches anything)."""
    like = prefix.replace("_", r"\_").replace("*", "%") + "%"
    roles = await admin_fetch(servers, "SELECT rolname FROM pg_roles WHERE rolname LIKE $1", like)
    databases = await admin_fetch(
        servers,
        "SELECT datname, pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname LIKE $1",
        like,
    )
    return {
        "roles": sorted(r["rolname"] for r in roles),
        "databases": {d["datname"]: d["owner"] for d in databases},
    }


def redis_admin(servers: dict[str, str]) -> aioredis.Redis:
    return aioredis.Redis(
        host=servers["BANDSY_REDIS_HOST"],
        port=int(servers["BANDSY_REDIS_PORT"]),
        username=servers["BANDSY_REDIS_ADMIN_USER"],
        password=servers["BANDSY_REDIS_ADMIN_PASSWORD"],
    )


async def redis_users(servers: dict[str, str], prefix: str) -> list[str]:
    async with redis_admin(servers) as client:
        users = await client.acl_users()
    names = (u.decode() if isinstance(u, bytes) else u for u in users)
    return sorted(name for name in names if fnmatch.fnmatchcase(name, f"{prefix}*"))


async def credential_users(kube: KubeApi, prefix: str) -> list[tuple[str, str]]:
    """(backend, user) of every canonical credential for users named ``prefix*`` (a glob),
    duplicates kept: two Secrets for one role would be two entries."""
    found = []
    for secret in await kube.list("v1", "Secret", namespace="bandsy-system", labels=OURS):
        user = (secret["metadata"].get("annotations") or {}).get("bandsy.app/user", "")
        if fnmatch.fnmatchcase(user, f"{prefix}*"):
            found.append((secret["metadata"]["labels"]["bandsy.app/backend"], user))
    return sorted(found)


async def postgres_login(servers: dict[str, str], creds: dict[str, str]) -> None:
    """Log in with a projection over verified TLS and prove who and where we are."""
    conn = await asyncpg.connect(
        host=creds["PGHOST"],
        port=int(creds["PGPORT"]),
        user=creds["PGUSER"],
        password=creds["PGPASSWORD"],
        database=creds["PGDATABASE"],
        ssl=pg_tls(servers),
        timeout=10,
    )
    try:
        row = await conn.fetchrow("SELECT current_user, current_database()")
        assert tuple(row) == (creds["PGUSER"], creds["PGDATABASE"]), row
    finally:
        await conn.close()


async def redis_login(creds: dict[str, str]) -> None:
    async with aioredis.from_url(creds["REDIS_URL"]) as client:
        await client.set(f"{creds['REDIS_KEY_PREFIX']}probe", "1")


# -- objects, inventories, snapshots -------------------------------------------------------------


async def managed_in(kube: KubeApi, namespaces: Iterable[str]) -> list[dict[str, Any]]:
    """Every object carrying our managed-by label in these namespaces, and the namespaces."""
    found = []
    for namespace in namespaces:
        live = await kube.get(ObjectRef("v1", "Namespace", "", namespace))
        if live is not None:
            found.append(live)
        for api_version, kind in NAMESPACED_KINDS:
            for obj in await kube.list(api_version, kind, namespace=namespace, labels=OURS):
                found.append({"apiVersion": api_version, "kind": kind, **obj})
    return found


async def labelled_for(kube: KubeApi, service: str) -> list[str]:
    """Objects anywhere labelled as this service's."""
    found = []
    for api_version, kind in NAMESPACED_KINDS:
        for obj in await kube.list(api_version, kind, labels={SERVICE_LABEL: service}):
            found.append(f"{kind} {obj['metadata']['namespace']}/{obj['metadata']['name']}")
    return found


def ref_of(obj: dict[str, Any]) -> ObjectRef:
    return ObjectRef.of(obj)


def inventory_refs(cr: dict[str, Any]) -> set[ObjectRef]:
    entries = (cr.get("status") or {}).get("inventory") or []
    return {ObjectRef.parse(entry.partition("|")[2]) for entry in entries}


def normalize(obj: dict[str, Any]) -> dict[str, Any]:
    """One managed object without what differs between two equally correct runs: server
    bookkeeping, owner uids (and the content hashes that include them), generated secret
    values (kept as keys) and status."""
    obj = copy.deepcopy(obj)
    meta = obj["metadata"]
    for key in ("uid", "resourceVersion", "managedFields", "creationTimestamp", "generation"):
        meta.pop(key, None)
    for owner in meta.get("ownerReferences") or []:
        owner.pop("uid", None)
    annotations = meta.get("annotations") or {}
    annotations.pop(APPLIED_HASH_ANNOTATION, None)
    obj.pop("status", None)
    if obj["kind"] == "Secret":
        obj["data"] = sorted(decode(obj))
    if obj["kind"] == "Service":
        for allocated in ("clusterIP", "clusterIPs"):
            obj["spec"].pop(allocated, None)
    if obj["kind"] == "Deployment":
        template = obj["spec"]["template"]["metadata"].get("annotations") or {}
        if CONFIG_HASH_ANNOTATION in template:
            template[CONFIG_HASH_ANNOTATION] = "<hash of config and secrets>"
    return obj


def normalize_status(status: dict[str, Any]) -> dict[str, Any]:
    """A service's status without times, generations and the rollout history (a run that was
    edited several times has more history than one that applied the final spec at once)."""

    def conditions(items: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
        return sorted((c["type"], c["status"], c["reason"], c["message"]) for c in items)

    environments = {
        env: {
            **{k: v for k, v in s.items() if k not in ("history", "readySince", "conditions")},
            "conditions": conditions(s.get("conditions") or []),
        }
        for env, s in (status.get("environments") or {}).items()
    }
    return {
        "conditions": conditions(status.get("conditions") or []),
        "environments": environments,
        "inventory": sorted(status.get("inventory") or []),
        "databases": sorted(status.get("databases") or []),
        "url": status.get("url"),
    }
