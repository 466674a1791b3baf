"""The operator's view of its custom resources: latest bodies from the watch, parsed once."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, TypeVar

import msgspec
from pydantic import ValidationError

from .constants import SERVICE_LABEL
from .kube import Packed, packed, unpacked, without_managed_fields
from .models import Environment, Service, parse_environment, parse_service
from .status import READY, TRUE, pod_failure

Model = TypeVar("Model", Environment, Service)


@dataclass(frozen=True)
class Known(Generic[Model]):
    """A custom resource as last seen. Its status is kept packed: a service's status (above all
    its conditions' messages) is most of its body, and it is read only by its own reconciles,
    its environments' and the metrics, while the spec is read by every neighbour's build."""

    body: dict[str, Any]  # without status (``status``, ``whole``) and managedFields
    model: Model | None  # None when the spec failed to parse
    error: str | None
    packed_status: Packed = b"{}"
    # The environments whose Ready condition is True: asked of every service at each of its
    # watch events and of every service of an environment at each of its reconciles.
    ready_in: frozenset[str] = frozenset()

    @property
    def generation(self) -> int:
        return int(self.body.get("metadata", {}).get("generation", 0))

    @property
    def deleting(self) -> bool:
        return bool(self.body.get("metadata", {}).get("deletionTimestamp"))

    @property
    def status(self) -> dict[str, Any]:
        """A copy of the status, the caller's to change."""
        return unpacked(self.packed_status)

    @property
    def whole(self) -> dict[str, Any]:
        return {**self.body, "status": self.status}


def _known(body: dict[str, Any], parse: Callable[[dict[str, Any]], Model]) -> Known[Model]:
    kept = {k: v for k, v in without_managed_fields(body).items() if k != "status"}
    status = body.get("status") or {}
    packed_status, ready_in = msgspec.json.encode(status), _ready_in(status)
    try:
        return Known(kept, parse(body), None, packed_status, ready_in)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        return Known(kept, None, f"invalid spec: {problems}", packed_status, ready_in)


def _ready_in(status: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(
        env
        for env, env_status in (status.get("environments") or {}).items()
        if any(
            c.get("type") == READY and c.get("status") == TRUE
            for c in (env_status or {}).get("conditions") or []
        )
    )


def version_not_newer(new: str, old: str) -> bool:
    """The same resourceVersion is the same object. Versions are opaque by contract, but an
    etcd-backed API server uses the etcd revision, so when both are integers an older one is
    recognised too."""
    if new and new == old:
        return True
    return new.isdigit() and old.isdigit() and int(new) < int(old)


def _resource_version(body: Mapping[str, Any]) -> str:
    return str(body.get("metadata", {}).get("resourceVersion", ""))


def _not_newer(body: dict[str, Any], current: Known[Any] | None) -> bool:
    """A watch event can arrive after we stored the response of our own newer write, and a watch
    starts from a version taken before start-up listed what it tells: neither is parsed again."""
    if current is None:
        return False
    return version_not_newer(_resource_version(body), _resource_version(current.body))


def _other_object(deleted: Mapping[str, Any], current: Known[Any] | None) -> bool:
    """The deletion of an object can arrive after its successor of the same name was stored
    (our own write's response, read before the watch told of the deletion): that one is kept."""
    if current is None:
        return False
    uid = deleted.get("metadata", {}).get("uid")
    return bool(uid) and uid != current.body.get("metadata", {}).get("uid")


def _links(known: Known[Service] | None) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """What relates a service to others: its dependencies and its environments."""
    if known is None or known.model is None:
        return None
    spec = known.model.spec
    return tuple(sorted(spec.depends_on)), tuple(sorted(spec.environments))


WorkloadKey = tuple[str, str]  # namespace, name
ServiceKey = tuple[str, str]  # namespace, service


def _pod_essentials(pod: Mapping[str, Any]) -> dict[str, Any]:
    """What a failing pod's verdict needs (``status.deployment_rollout``): a pod body is mostly
    its spec, which nothing here reads."""
    meta = pod.get("metadata", {})
    kept = ("name", "namespace", "ownerReferences", "resourceVersion")
    status = pod.get("status") or {}
    return {
        "metadata": {key: meta[key] for key in kept if key in meta},
        "status": {
            key: status[key]
            for key in ("initContainerStatuses", "containerStatuses")
            if key in status
        },
    }


class World:
    """Read-mostly: every reconcile asks for the valid models, so those maps are kept up to date
    on each observation instead of being rebuilt per question."""

    def __init__(self) -> None:
        self.environments: dict[str, Known[Environment]] = {}
        self.services: dict[str, Known[Service]] = {}
        self._valid_environments: dict[str, Environment] = {}
        self._valid_services: dict[str, Service] = {}
        # The newest body of each of our Deployments (its resourceVersion, and the body packed):
        # from its watch events and our own writes.
        self._workloads: dict[WorkloadKey, tuple[str, Packed]] = {}
        # Our pods that fail (status.pod_failure), by service and pod name, from their watch
        # events: healthy pods, nearly all of them, cost nothing to remember.
        self._failing_pods: dict[ServiceKey, dict[str, dict[str, Any]]] = {}
        # Services with a backup Job that ended since their last reconcile took it in.
        self._backup_news: set[ServiceKey] = set()
        # Whether each database server (``models.server_key``) answered the last reconcile that
        # asked it (SPEC §12: an alert when one does not).
        self._database_servers: dict[str, bool] = {}
        # Each service's dependents with their environments: every service environment's build
        # asks (its NetworkPolicy), so this is built once after a change of anyone's
        # dependencies or environments instead of scanning every service per question.
        self._dependents: dict[str, list[tuple[str, frozenset[str]]]] | None = None
        # Counts the changes of the custom resources and database servers known, so that what is
        # computed from them alone (a scrape's gauges) is computed again only after one.
        self.revision = 0

    def observe_environment(self, body: dict[str, Any]) -> Known[Environment]:
        name = body["metadata"]["name"]
        if _not_newer(body, self.environments.get(name)):
            return self.environments[name]
        known = _known(body, parse_environment)
        self.revision += 1
        self.environments[name] = known
        if known.model is not None and not known.deleting:
            self._valid_environments[name] = known.model
        else:
            self._valid_environments.pop(name, None)
        return known

    def forget_environment(self, body: Mapping[str, Any]) -> Known[Environment] | None:
        """Drop a deleted environment; returns what remains known under its name."""
        name = body["metadata"]["name"]
        if _other_object(body, self.environments.get(name)):
            return self.environments[name]
        self.revision += 1
        self.environments.pop(name, None)
        self._valid_environments.pop(name, None)
        return None

    def observe_service(self, body: dict[str, Any]) -> Known[Service]:
        name = body["metadata"]["name"]
        if _not_newer(body, self.services.get(name)):
            return self.services[name]
        known = _known(body, parse_service)
        self.revision += 1
        if _links(known) != _links(self.services.get(name)):
            self._dependents = None
        self.services[name] = known
        if known.model is not None:
            self._valid_services[name] = known.model
        else:
            self._valid_services.pop(name, None)
        return known

    def forget_service(self, body: Mapping[str, Any]) -> Known[Service] | None:
        """Drop a deleted service; returns what remains known under its name."""
        name = body["metadata"]["name"]
        if _other_object(body, self.services.get(name)):
            return self.services[name]
        self._dependents = None
        self.revision += 1
        self.services.pop(name, None)
        self._valid_services.pop(name, None)
        return None

    def forget_custom_resources(self) -> None:
        """Start-up's reading failed half way: what it read may be gone when it reads again."""
        self.environments.clear()
        self.services.clear()
        self._valid_environments.clear()
        self._valid_services.clear()
        self._dependents = None
        self.revision += 1

    def valid_environments(self) -> Mapping[str, Environment]:
        """Parsed environments that are not being deleted (a read-only view)."""
        return MappingProxyType(self._valid_environments)

    def parsed_environments(self) -> dict[str, Environment]:
        """Parsed environments, those being deleted included: accounts there are still locked
        through their settings until their finalizer has run."""
        return {name: k.model for name, k in self.environments.items() if k.model is not None}

    def valid_services(self) -> Mapping[str, Service]:
        """Parsed services (a read-only view)."""
        return MappingProxyType(self._valid_services)

    def services_in(self, environment: str) -> list[str]:
        return sorted(
            name
            for name, k in self.services.items()
            if k.model is not None and environment in k.model.spec.environments
        )

    def dependents_of(self, service: str, environment: str) -> list[str]:
        """Services in ``environment`` whose pods may reach this one. Suspended ones count: the
        operator leaves them alone, their pods keep running, and suspending one service must not
        change any other service's NetworkPolicy."""
        if self._dependents is None:
            index: dict[str, list[tuple[str, frozenset[str]]]] = {}
            for name, k in sorted(self.services.items()):
                if k.model is not None:
                    environments = frozenset(k.model.spec.environments)
                    for upstream in k.model.spec.depends_on:
                        index.setdefault(upstream, []).append((name, environments))
            self._dependents = index
        return [name for name, envs in self._dependents.get(service, []) if environment in envs]

    def neighbours(self, service: Service | None) -> set[str]:
        """Services whose objects mention this one: its dependencies and its dependents."""
        if service is None:
            return set()
        related = set(service.spec.depends_on)
        related.update(
            name
            for name, k in self.services.items()
            if k.model is not None and service.name in k.model.spec.depends_on
        )
        related.discard(service.name)
        return related

    # -- workloads ------------------------------------------------------------------------------

    def workload(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The newest body seen of one of our Deployments, or None when there is none yet."""
        stored = self._workloads.get((namespace, name))
        return None if stored is None else unpacked(stored[1])

    def observe_workload(self, body: Mapping[str, Any]) -> bool:
        """Remember a Deployment's body (what we applied or read); False when it is not newer
        than the one remembered, such as the echo of our own apply."""
        meta = body.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        known = self._workloads.get(key)
        version = _resource_version(body)
        if known is not None and version_not_newer(version, known[0]):
            return False
        self._workloads[key] = (version, packed(body))
        return True

    def _deployed_in(self, service: str, namespace: str) -> bool:
        """The service is known and has an environment in ``namespace``."""
        known = self.services.get(service)
        if known is None or known.model is None:
            return False
        environments = self._valid_environments
        return any(
            env in environments and environments[env].namespace == namespace
            for env in known.model.spec.environments
        )

    def workload_news(self, event_type: str | None, body: Mapping[str, Any]) -> str | None:
        """The service to reconcile for a watch event about one of our Deployments, or None when
        the event tells nothing new: the echo of our own apply, a version already seen, or a
        Deployment outside the service's environments."""
        meta = body.get("metadata", {})
        service = str((meta.get("labels") or {}).get(SERVICE_LABEL, ""))
        namespace = meta.get("namespace", "")
        if not self._deployed_in(service, namespace):
            return None
        if event_type == "DELETED":
            self._workloads.pop((namespace, meta.get("name", "")), None)
            return service
        return service if self.observe_workload(body) else None

    # -- backup Jobs -----------------------------------------------------------------------------

    def note_backup_news(self, namespace: str, service: str) -> None:
        self._backup_news.add((namespace, service))

    def take_backup_news(self, namespace: str, service: str) -> bool:
        """Whether a backup Job of the service ended there since this was last asked."""
        key = (namespace, service)
        news = key in self._backup_news
        self._backup_news.discard(key)
        return news

    # -- database servers --------------------------------------------------------------------

    def note_database_servers(self, reached: Iterable[str], unreachable: Iterable[str]) -> None:
        answers = {**dict.fromkeys(reached, True), **dict.fromkeys(unreachable, False)}
        if all(self._database_servers.get(key) == up for key, up in answers.items()):
            return
        self.revision += 1
        self._database_servers.update(answers)

    def database_servers(self) -> dict[str, bool]:
        """The last answer of each server an environment names now: one it no longer names
        (moved away from while it was down) is history, not an outage. Read by scrapes on
        another thread: list() and sorted() copy each map in one step under the GIL."""
        environments = list(self._valid_environments.values())
        named = {key for env in environments for key in env.database_servers()}
        return {key: up for key, up in sorted(self._database_servers.items()) if key in named}

    # -- pods -----------------------------------------------------------------------------------

    def failing_pods(self, namespace: str, service: str) -> list[dict[str, Any]]:
        """The service's pods in ``namespace`` that fail, as last seen (their essentials)."""
        return list(self._failing_pods.get((namespace, service), {}).values())

    def pod_news(self, event_type: str | None, body: Mapping[str, Any]) -> str | None:
        """The service to reconcile for a watch event about one of our pods: when the pod
        starts failing, fails otherwise, or stops failing (recovered or gone). A pod that runs,
        or keeps failing as it did, is no news."""
        meta = body.get("metadata", {})
        service = str((meta.get("labels") or {}).get(SERVICE_LABEL, ""))
        key, name = (meta.get("namespace", ""), service), meta.get("name", "")
        known = self._failing_pods.get(key, {}).get(name)
        deleted = event_type == "DELETED"
        if (
            known is not None
            and not deleted
            and version_not_newer(_resource_version(body), _resource_version(known))
        ):
            return None
        failure = None if deleted else pod_failure(body)
        if failure is None:
            if known is None:
                return None
            self._forget_pod(key, name)
        else:
            self._failing_pods.setdefault(key, {})[name] = _pod_essentials(body)
            if known is not None and pod_failure(known) == failure:
                return None
        return service if self._deployed_in(service, key[0]) else None

    def observe_pods(
        self, namespace: str, service: str, listed: Iterable[Mapping[str, Any]]
    ) -> None:
        """A live list of the service's pods in ``namespace`` replaces what the watch told (it
        may have missed a deletion), but for pods the watch has since seen newer."""
        key = (namespace, service)
        remembered = self._failing_pods.get(key, {})
        failing: dict[str, dict[str, Any]] = {}
        for pod in listed:
            name = pod.get("metadata", {}).get("name", "")
            newest: Mapping[str, Any] = pod
            known = remembered.get(name)
            if known is not None and version_not_newer(
                _resource_version(pod), _resource_version(known)
            ):
                newest = known
            if pod_failure(newest) is not None:
                failing[name] = _pod_essentials(newest)
        if failing:
            self._failing_pods[key] = failing
        else:
            self._failing_pods.pop(key, None)

    def _forget_pod(self, key: ServiceKey, name: str) -> None:
        pods = self._failing_pods.get(key, {})
        pods.pop(name, None)
        if not pods:
            self._failing_pods.pop(key, None)
