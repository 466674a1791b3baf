"""What a service's builders read besides the two CRs, gathered once per environment."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..constants import SERVICE_KIND
from ..models import EgressTarget, Environment, Service
from ..promotion import Image
from .meta import object_meta, owner_reference, service_labels


@dataclass(frozen=True)
class DatabasePeer:
    """Where a database the service uses lives, for NetworkPolicy egress."""

    port: int
    egress_to: EgressTarget | None


@dataclass(frozen=True)
class BackupPlan:
    """What the backup CronJob needs beyond the CRs: the image that runs it (the operator's
    own) and the scratch database its verify step restores into."""

    image: str
    scratch_database: str


@dataclass(frozen=True)
class MirrorPlan:
    """The mirror CronJob of one service database (SPEC §11): the operator's image refills
    ``copy_database`` from ``source``'s latest verified backup and runs ``scrub`` on it."""

    image: str
    source: str
    schedule: str
    copy_database: str
    scrub: str


@dataclass(frozen=True)
class ServedKinds:
    """The kinds of other projects the cluster serves now (their CRDs are established), asked
    at start and at every resync: the operator writes an object only while its kind is."""

    service_monitors: bool = False  # the Prometheus Operator's (SPEC §12)
    http_routes: bool = False  # Gateway API's
    certificates: bool = False  # cert-manager's


@dataclass(frozen=True)
class ServiceInputs:
    """Everything, besides the two CRs, that decides a service's objects in one environment."""

    service: Service
    env: Environment
    image: Image  # what the gates let through, or what runs while they hold a new one
    hash_key: bytes  # keys the pods' config hash (see config_hash)
    dependency_ports: Mapping[str, int] = field(default_factory=dict)  # dependency -> its port
    dependents: Sequence[str] = ()  # services in this environment that depend on this one
    existing_secrets: Mapping[str, str] = field(default_factory=dict)  # live <svc>-secrets values
    # backend ("postgres", "redis", "mongo") -> keys of the <svc>-<backend> Secret
    credentials: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    database_peers: Sequence[DatabasePeer] = ()
    # The declared egress hosts' addresses (CIDRs), as last resolved.
    egress_addresses: Mapping[str, Sequence[str]] = field(default_factory=dict)
    backup: BackupPlan | None = None  # the environment backs up this service's database
    mirror: MirrorPlan | None = None  # the environment mirrors another's data into this one's
    # The last restore, and the last mirror, swapped in here: the pods start after them.
    restored: str | None = None
    mirrored: str | None = None
    kinds: ServedKinds = ServedKinds()

    @property
    def name(self) -> str:
        return self.service.name

    @property
    def namespace(self) -> str:
        return self.env.namespace

    @property
    def exposed(self) -> bool:
        return self.service.spec.external and self.name in self.env.spec.ingress.allowed_services

    def meta(self, name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
        return object_meta(
            name,
            service_labels(self.name, self.env.name),
            owner_reference(SERVICE_KIND, self.service.meta),
            namespace=self.namespace,
            annotations=annotations,
        )
