"""BandsyEnvironment reconciler: namespace, environment-wide policies, quota and access."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from .. import inventory
from ..apply import Applier
from ..builders.environment import build_environment_objects
from ..constants import ENVIRONMENT_KIND
from ..events import EventRecorder, EventType
from ..kube import KubeApi, ObjectRef
from ..models import parse_environment, parse_identity
from ..status import FALSE, TRUE, ConditionUpdate, merge_conditions, now_rfc3339, transitions
from ..validation import shared_credentials
from ..world import Known, World
from .service import READY, unmanaged_problem

log = logging.getLogger(__name__)
SHARED_CREDENTIALS = "SharedCredentials"


class EnvironmentReconciler:
    def __init__(
        self, api: KubeApi, applier: Applier, recorder: EventRecorder, world: World
    ) -> None:
        self.api = api
        self.applier = applier
        self.recorder = recorder
        self.world = world

    async def reconcile(self, name: str, verify: bool = True) -> None:
        """Converge one environment. Without ``verify`` (a service's readiness changed, another
        environment changed), objects unchanged since this operator last applied or read them
        are not read again: the periodic resync reads them all."""
        known = self.world.environments.get(name)
        if known is None or known.deleting:
            return
        if known.model is None:
            await self._publish(
                known, [ConditionUpdate(READY, FALSE, "InvalidSpec", known.error or "")], {}
            )
            return
        env = known.model
        previous = inventory.parse(known.status.get("inventory") or [])
        objects = build_environment_objects(env)
        wanted = {env.name: frozenset(ObjectRef.of(obj) for obj in objects)}
        grown = inventory.union(previous, wanted)
        if grown != previous:
            await self._write_status(
                known, {**known.status, "inventory": inventory.serialize(grown)}
            )
            known = self.world.environments[name]

        applied = await self.applier.ensure_all(
            objects,
            trust_confirmed=not verify,
            inventory=None if verify else inventory.refs(previous),
        )
        if any(result.existed for result in applied):
            await self.reconcile(name, verify=True)  # built for new objects: read them all
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
        shared = shared_credentials(env, self.world.valid_environments())
        sharing = (
            ConditionUpdate(
                SHARED_CREDENTIALS,
                TRUE,
                "SharedCredentials",
                "shares " + "; ".join(shared) + ": one password, one role for both; put {env} "
                "in userTemplate to keep environments apart",
            )
            if shared
            else ConditionUpdate(SHARED_CREDENTIALS, FALSE, "NotShared", "")
        )
        await self._publish(
            known,
            [ready, sharing],
            {
                "namespace": env.namespace,
                "services": self._services_summary(name),
                "inventory": inventory.serialize(wanted),
            },
        )

    def _services_summary(self, env_name: str) -> str:
        names = self.world.services_in(env_name)
        ready = 0
        for name in names:
            env_status = (self.world.services[name].status.get("environments") or {}).get(
                env_name
            ) or {}
            conditions = env_status.get("conditions") or []
            ready += any(c["type"] == READY and c["status"] == TRUE for c in conditions)
        return f"{ready}/{len(names)} ready"

    async def finalize(self, body: Mapping[str, Any]) -> None:
        """Delete policy removes the namespace and everything in it; Retain releases ownership
        (objects stay, without our ownerReference, so the garbage collector keeps them)."""
        env = parse_environment(dict(body))
        entries = (body.get("status") or {}).get("inventory") or []
        if env.spec.deletion_policy == "Delete":
            pruned = await self.applier.prune(inventory.stale(inventory.parse(entries), {}))
            log.info("environment %s deleted: removed %d objects", env.name, len(pruned))
            return
        released = 0
        for obj in build_environment_objects(env):
            live = await self.api.get(ObjectRef.of(obj))
            if live is None or not (live.get("metadata", {}).get("ownerReferences")):
                continue
            obj["metadata"].pop("ownerReferences", None)
            await self.api.apply(obj)
            released += 1
        log.info("environment %s deleted: released %d objects (Retain)", env.name, released)

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
            if cond["type"] == SHARED_CREDENTIALS and cond["status"] != TRUE:
                continue
            warning = (cond["type"] == READY) != (cond["status"] == TRUE)
            type_: EventType = "Warning" if warning else "Normal"
            await self.recorder.post(
                ENVIRONMENT_KIND, identity, type_, cond["reason"], cond["message"]
            )

    async def _write_status(self, known: Known[Any], status: dict[str, Any]) -> None:
        name = known.body["metadata"]["name"]
        updated = await self.api.apply_status(ENVIRONMENT_KIND, name, status)
        self.world.observe_environment(updated)
