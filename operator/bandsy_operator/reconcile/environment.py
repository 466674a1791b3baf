"""BandsyEnvironment reconciler: namespace, environment-wide policies, quota, access and cost."""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from typing import Any

from .. import inventory
from ..apply import Applier
from ..builders.environment import build_environment_objects
from ..constants import ENVIRONMENT_KIND
from ..cost import EnvironmentCost, environment_cost
from ..events import EventRecorder, EventType
from ..kube import KubeApi, ObjectRef
from ..models import BACKENDS, Environment, SecretRef, Service, parse_environment, parse_identity
from ..naming import BACKUP_STORAGE_SECRET
from ..observation import ReadMode
from ..status import (
    FALSE,
    READY,
    TRUE,
    ConditionUpdate,
    merge_conditions,
    now_rfc3339,
    transitions,
)
from ..validation import quota_without_defaults, shared_credentials
from ..world import Known, World
from .databases import SHARED_CREDENTIALS_REFUSED, AccountRef, DatabaseReconciler
from .service import DATABASE_READY, ReclaimPendingError, unmanaged_problem

log = logging.getLogger(__name__)
SHARED_CREDENTIALS = "SharedCredentials"
QUOTA_WITHOUT_DEFAULTS = "QuotaWithoutDefaults"
BUDGET_EXCEEDED = "BudgetExceeded"
# Warnings: True is the news (a Warning Event); their going back to False posts nothing.
WARNING_CONDITIONS = (SHARED_CREDENTIALS, QUOTA_WITHOUT_DEFAULTS, BUDGET_EXCEEDED)
BACKUP_STORAGE = "BackupStorage"
ACCESS_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
CA_KEY = "ca.crt"


def _decoded(secret: Mapping[str, Any] | None) -> dict[str, str]:
    data = (secret or {}).get("data") or {}
    return {key: base64.b64decode(value).decode(errors="replace") for key, value in data.items()}


def budget_condition(cost: EnvironmentCost) -> ConditionUpdate:
    """SPEC §12: over the monthly budget, said with the biggest spenders."""
    if cost.budget is None:
        return ConditionUpdate(BUDGET_EXCEEDED, FALSE, "NoBudget", "spec.cost.monthlyBudget unset")
    total = cost.to_status()["monthly"]
    if not cost.over_budget:
        return ConditionUpdate(
            BUDGET_EXCEEDED, FALSE, "WithinBudget", f"{total} of {cost.budget} a month"
        )
    top = sorted(cost.services, key=lambda s: s.monthly, reverse=True)[:3]
    biggest = ", ".join(f"{s.service} {s.to_status()['monthly']}" for s in top)
    return ConditionUpdate(
        BUDGET_EXCEEDED,
        TRUE,
        "BudgetExceeded",
        f"{total} a month, over the budget of {cost.budget} (biggest: {biggest})",
    )


def quota_condition(env: Environment) -> ConditionUpdate:
    """QuotaWithoutDefaults (a warning): a quota on cpu or memory that the container defaults
    do not cover refuses every pod that does not ask for them itself (SPEC §12)."""
    uncovered = quota_without_defaults(env)
    if not uncovered:
        return ConditionUpdate(QUOTA_WITHOUT_DEFAULTS, FALSE, "DefaultsCoverQuota", "")
    fixes = sorted(set(uncovered.values()))
    return ConditionUpdate(
        QUOTA_WITHOUT_DEFAULTS,
        TRUE,
        QUOTA_WITHOUT_DEFAULTS,
        f"quota on {', '.join(uncovered)} without container defaults: a pod that does not ask "
        "for them is refused (its Deployment reports FailedCreate); set "
        + ", ".join(f"spec.defaults.{fix}" for fix in fixes),
    )


class EnvironmentReconciler:
    def __init__(
        self,
        api: KubeApi,
        applier: Applier,
        recorder: EventRecorder,
        world: World,
        databases: DatabaseReconciler,
    ) -> None:
        self.api = api
        self.applier = applier
        self.recorder = recorder
        self.world = world
        self.databases = databases
        self.job_image: str | None = None  # set at start (controller)
        self.operator_subject: dict[str, str] | None = None  # set at start (controller)

    async def reconcile(self, name: str, mode: ReadMode = ReadMode.LIVE) -> None:
        """Converge one environment, reading what ``mode`` says (see ``observation``): a
        service's readiness or another environment changing needs no read of its objects."""
        known = self.world.environments.get(name)
        if known is None or known.deleting:
            return
        if known.model is None:
            await self._publish(
                known, [ConditionUpdate(READY, FALSE, "InvalidSpec", known.error or "")], {}
            )
            return
        env = known.model
        previous = inventory.recorded(known.status)
        storage, storage_condition = await self._backup_storage(env)
        objects = build_environment_objects(env, storage, self.operator_subject)
        wanted = {env.name: frozenset(ObjectRef.of(obj) for obj in objects)}
        grown = inventory.union(previous, wanted)
        if grown != previous:
            await self._write_status(
                known, {**known.status, "inventory": inventory.serialize(grown)}
            )
            known = self.world.environments[name]

        applied = await self.applier.ensure_all(objects, mode, inventory.refs(previous))
        if mode is ReadMode.TRUSTED and any(result.outdated for result in applied):
            await self.reconcile(name, ReadMode.LIVE)  # built for new objects: read them all
            return
        problems = [unmanaged_problem(a.live) for a in applied if a.refused and a.live is not None]
        if problems:
            wanted = grown
        else:
            await self.applier.prune(inventory.stale(previous, wanted))

        if problems:
            ready = ConditionUpdate(
                READY, FALSE, problems[0].reason, "; ".join(p.message for p in problems)
            )
        else:
            ready = ConditionUpdate(READY, TRUE, "Ready", f"namespace {env.namespace} is set up")
        cost = environment_cost(env, self._services_in(name))
        await self._publish(
            known,
            [
                ready,
                *self._credential_conditions(env),
                quota_condition(env),
                budget_condition(cost),
                *([storage_condition] if storage_condition else []),
            ],
            {
                "namespace": env.namespace,
                "services": self._services_summary(name),
                "inventory": inventory.serialize(wanted),
                "cost": cost.to_status(),
                # What `bandsyctl db` runs its relay with: an image every node already pulls.
                **({"jobImage": self.job_image} if self.job_image else {}),
            },
        )

    async def _backup_storage(
        self, env: Environment
    ) -> tuple[dict[str, str] | None, ConditionUpdate | None]:
        """The values of the backups' storage Secret, read from the Secrets the environment
        names (the operator watches no Secrets: read on every reconcile, written on change)."""
        if env.spec.backups is None:
            return None, None
        s3 = env.spec.backups.storage.s3
        refs: list[tuple[str, SecretRef, tuple[str, ...]]] = [
            ("credentialsSecretRef", s3.credentials_secret_ref, ACCESS_KEYS)
        ]
        if s3.ca_secret_ref is not None:
            refs.append(("caSecretRef", s3.ca_secret_ref, (CA_KEY,)))
        values: dict[str, str] = {}
        for field_name, ref, keys in refs:
            found = _decoded(await self.api.get(ObjectRef("v1", "Secret", ref.namespace, ref.name)))
            missing = [key for key in keys if not found.get(key)]
            if missing:
                return None, ConditionUpdate(
                    BACKUP_STORAGE,
                    FALSE,
                    "BackupStorageSecretMissing",
                    f"spec.backups.storage.s3.{field_name}: Secret {ref.namespace}/{ref.name} "
                    f"lacks {', '.join(missing)}; no backup runs until it has them",
                )
            values |= {key: found[key] for key in keys}
        return values, ConditionUpdate(
            BACKUP_STORAGE, TRUE, "BackupStorageReady", f"bucket {s3.bucket} configured"
        )

    def _credential_conditions(self, env: Environment) -> list[ConditionUpdate]:
        """SharedCredentials (a warning: one role, one password for several environments),
        and DatabaseReady=False when a role would be shared across protection (SPEC §5)."""
        shared, refused = shared_credentials(env, self.world.valid_environments())
        conditions = [
            ConditionUpdate(
                SHARED_CREDENTIALS,
                TRUE,
                "SharedCredentials",
                "shares " + "; ".join(shared) + ": one password, one role for both; put {env} "
                "in userTemplate to keep environments apart",
            )
            if shared
            else ConditionUpdate(SHARED_CREDENTIALS, FALSE, "NotShared", "")
        ]
        if refused:
            conditions.append(
                ConditionUpdate(
                    DATABASE_READY,
                    FALSE,
                    SHARED_CREDENTIALS_REFUSED,
                    "a protected environment refuses to share " + "; ".join(refused) + ": put "
                    '{env} in its userTemplate (e.g. "{service}-{env}-user") or set '
                    "allowSharedCredentials: true",
                )
            )
        elif any(getattr(env.spec, backend) is not None for backend in BACKENDS):
            conditions.append(
                ConditionUpdate(
                    DATABASE_READY, TRUE, "DatabaseReady", "no role shared across protection"
                )
            )
        return conditions

    def _services_in(self, env_name: str) -> list[Service]:
        services = self.world.valid_services()
        return [services[n] for n in self.world.services_in(env_name) if n in services]

    def _services_summary(self, env_name: str) -> str:
        names = self.world.services_in(env_name)
        ready = sum(env_name in self.world.services[name].ready_in for name in names)
        return f"{ready}/{len(names)} ready"

    async def finalize(self, body: Mapping[str, Any]) -> None:
        """Services' accounts here are locked (their data kept), as the services can no longer
        reach them to do so. Delete policy removes the namespace and everything in it; Retain
        releases ownership (objects stay, without our ownerReference, so the garbage collector
        keeps them). Raises ReclaimPendingError while a database server is unreachable."""
        env = parse_environment(dict(body))
        await self._lock_accounts(env)
        # A copy of the bucket's keys never outlives the environment, whatever the policy.
        await self.api.delete(ObjectRef("v1", "Secret", env.namespace, BACKUP_STORAGE_SECRET))
        if env.spec.deletion_policy == "Delete":
            recorded = inventory.recorded(body.get("status") or {})
            pruned = await self.applier.prune(inventory.stale(recorded, {}))
            log.info("environment %s deleted: removed %d objects", env.name, len(pruned))
            return
        released = 0
        # Without the operator's subject: its own RoleBinding keeps its ownerReference, and the
        # garbage collector removes it with the environment.
        for obj in build_environment_objects(env):
            live = await self.api.get(ObjectRef.of(obj))
            if live is None or not (live.get("metadata", {}).get("ownerReferences")):
                continue
            obj["metadata"].pop("ownerReferences", None)
            await self.api.apply(obj)
            released += 1
        log.info("environment %s deleted: released %d objects (Retain)", env.name, released)

    async def _lock_accounts(self, env: Environment) -> None:
        held: set[AccountRef] = set()
        for known in list(self.world.services.values()):
            held |= {AccountRef.parse(a) for a in known.status.get("databases") or []}
        here = {a for a in held if a.env == env.name}
        if not here:
            return
        # A role other environments still use (a template without {env}) stays open.
        pending = await self.databases.reclaim(here, held - here, set(), {env.name: env})
        if pending:
            raise ReclaimPendingError(", ".join(map(str, pending)))
        log.info("environment %s deleted: locked %d database accounts", env.name, len(here))

    async def _publish(
        self, known: Known[Any], conditions: list[ConditionUpdate], fields: dict[str, Any]
    ) -> None:
        generation = known.generation
        before = known.status
        after = {
            **before,
            **fields,
            "observedGeneration": generation,
            "conditions": merge_conditions(
                before.get("conditions") or [], conditions, generation, now_rfc3339()
            ),
        }
        if after == before:
            return
        await self._write_status(known, after)
        identity = parse_identity(known.body)
        for cond in transitions(before.get("conditions") or [], after["conditions"]):
            if cond["type"] in WARNING_CONDITIONS and cond["status"] != TRUE:
                continue
            warning = (cond["type"] in (READY, DATABASE_READY)) != (cond["status"] == TRUE)
            type_: EventType = "Warning" if warning else "Normal"
            await self.recorder.post(
                ENVIRONMENT_KIND, identity, type_, cond["reason"], cond["message"]
            )

    async def _write_status(self, known: Known[Any], status: dict[str, Any]) -> None:
        name = known.body["metadata"]["name"]
        updated = await self.api.apply_status(ENVIRONMENT_KIND, name, status)
        self.world.observe_environment(updated)
