"""Pydantic models of the two custom resources (SPEC §3). Field names follow the CRD (camelCase)."""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from .constants import PRODUCTION
from .naming import DNS_NAMESPACE

Quantity = int | str
PodSecurityLevel = Literal["privileged", "baseline", "restricted"]
ReclaimPolicy = Literal["Retain", "Delete"]
BACKENDS = ("postgres", "redis", "mongo")
SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields ignored, values immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


# --- BandsyEnvironment -------------------------------------------------------------------------


class Promotion(ApiModel):
    from_: str | None = Field(default=None, alias="from")
    soak_seconds: int = Field(default=0, ge=0)
    freeze: bool = False


class ImagePolicy(ApiModel):
    tag_pattern: str | None = None


ExposureMode = Literal["Gateway", "Ingress"]


class IngressSettings(ApiModel):
    """How external services are reached (SPEC §12): through the shared Gateway of
    ``EnvironmentSpec.gateway`` (the default), or an Ingress per service (``mode: Ingress``,
    for clusters that keep a maintained Ingress controller)."""

    # None: unsaid, see ``Environment.exposure_mode``.
    mode: ExposureMode | None = None
    domain: str = "bandsy.app"
    class_name: str | None = None
    cluster_issuer: str | None = None
    controller_namespace: str = "ingress-nginx"
    allowed_services: tuple[str, ...] = ("web",)


class GatewayRef(ApiModel):
    """The shared Gateway exposed services attach to; the platform team owns it. Without
    ``section_name`` the operator adds an HTTPS listener per host on ``port``, with its
    certificate from cert-manager; with it, routes attach to that listener, whose TLS is the
    Gateway owner's (a wildcard certificate, say)."""

    name: str
    namespace: str
    section_name: str | None = None
    port: int = Field(default=443, ge=1, le=65535)


class SecretRef(ApiModel):
    namespace: str
    name: str


class EgressTarget(ApiModel):
    namespace: str | None = None
    pod_selector: dict[str, str] = Field(default_factory=dict)
    cidr: str | None = None


class Mirror(ApiModel):
    """SPEC §11: this environment's service databases are refilled, on ``schedule``, from
    ``from_``'s latest verified backups, scrubbed with each service's ``postgres.scrub``."""

    from_: str = Field(alias="from")
    schedule: str


class DatabaseServer(ApiModel):
    """What every database server's settings have: where it is."""

    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def server_key(backend: str, address: str) -> str:
    """How the operator names one database server: ``postgres|db.example:5432``."""
    return f"{backend}|{address}"


class PostgresServer(DatabaseServer):
    host: str
    port: int = 5432
    ssl_mode: SslMode = "require"
    admin_secret_ref: SecretRef
    user_template: str = "{service}-user"
    database_template: str = "{service}-{env}"
    egress_to: EgressTarget | None = None
    allow_shared_credentials: bool = False
    mirror: Mirror | None = None


class RedisServer(DatabaseServer):
    host: str
    port: int = 6379
    tls: bool = False
    admin_secret_ref: SecretRef
    user_template: str = "{service}-{env}"
    key_prefix_template: str = "{service}:{env}:"
    egress_to: EgressTarget | None = None
    allow_shared_credentials: bool = False


class MongoServer(DatabaseServer):
    host: str
    port: int = 27017
    tls: bool = False
    admin_secret_ref: SecretRef
    user_template: str = "{service}-user"
    database_template: str = "{service}-{env}"
    egress_to: EgressTarget | None = None
    allow_shared_credentials: bool = False


class NetworkPolicySettings(ApiModel):
    allow_from_namespaces: tuple[str, ...] = ()
    # Where pods resolve names: CoreDNS's pods by default; addresses for a DNS server that is
    # not a pod (NodeLocal DNSCache's link-local address, the local node's host CoreDNS).
    dns_to: EgressTarget = EgressTarget(namespace=DNS_NAMESPACE)


class Access(ApiModel):
    viewers: tuple[str, ...] = ()
    editors: tuple[str, ...] = ()


class ComputeQuantities(ApiModel):
    cpu: Quantity | None = None
    memory: Quantity | None = None

    def given(self) -> dict[str, str]:
        """The quantities given, by resource name."""
        return {
            name: str(value)
            for name, value in (("cpu", self.cpu), ("memory", self.memory))
            if value is not None
        }


class ContainerDefaults(ApiModel):
    """What a container that asks for nothing gets (a LimitRange), so a quota admits it."""

    requests: ComputeQuantities = ComputeQuantities()
    limits: ComputeQuantities = ComputeQuantities()


class S3Storage(ApiModel):
    """An S3 bucket (any S3 API). ``credentials_secret_ref``: keys AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY; ``ca_secret_ref``: key ca.crt, for an endpoint with a private CA;
    ``egress_to``: where the backup pods may connect to reach it (NetworkPolicy)."""

    endpoint: str | None = None  # None: AWS
    bucket: str
    prefix: str = ""
    region: str = "us-east-1"
    credentials_secret_ref: SecretRef
    ca_secret_ref: SecretRef | None = None
    egress_to: EgressTarget | None = None


class BackupStorage(ApiModel):
    s3: S3Storage


class BackupRetention(ApiModel):
    count: int = Field(default=7, ge=1, le=1000)
    days: int | None = Field(default=None, ge=1)


class Backups(ApiModel):
    """SPEC §11: a verified logical backup of each service database, on a schedule."""

    schedule: str
    retention: BackupRetention = BackupRetention()
    storage: BackupStorage


class Cost(ApiModel):
    """SPEC §12: prices per hour (OpenCost's defaults where unset) and a monthly budget."""

    cpu_core_hour: float | None = Field(default=None, ge=0)
    memory_gib_hour: float | None = Field(default=None, ge=0, alias="memoryGiBHour")
    monthly_budget: float | None = Field(default=None, ge=0)


class EnvironmentSpec(ApiModel):
    namespace: str | None = None
    protected: bool | None = None  # None: the default of Environment.protected
    pod_security: PodSecurityLevel = "baseline"
    promotion: Promotion = Promotion()
    image_policy: ImagePolicy = ImagePolicy()
    ingress: IngressSettings = IngressSettings()
    gateway: GatewayRef | None = None
    postgres: PostgresServer | None = None
    redis: RedisServer | None = None
    mongo: MongoServer | None = None
    config: dict[str, str] = Field(default_factory=dict)
    network_policy: NetworkPolicySettings = NetworkPolicySettings()
    access: Access = Access()
    quota: dict[str, Quantity] = Field(default_factory=dict)
    defaults: ContainerDefaults = ContainerDefaults()
    # Secrets in the environment's namespace the kubelet pulls service images with.
    image_pull_secrets: tuple[str, ...] = ()
    deletion_policy: ReclaimPolicy = "Retain"
    backups: Backups | None = None
    cost: Cost | None = None


class ObjectIdentity(ApiModel):
    """What the builders need of a custom resource's metadata (ownerReferences, names)."""

    name: str
    uid: str
    generation: int = 0
    annotations: dict[str, str] = Field(default_factory=dict)


class Environment(ApiModel):
    meta: ObjectIdentity
    spec: EnvironmentSpec

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def namespace(self) -> str:
        return self.spec.namespace or self.meta.name

    def database_servers(self) -> list[str]:
        """The database servers its settings name (``server_key``)."""
        servers: list[DatabaseServer | None] = [getattr(self.spec, b) for b in BACKENDS]
        return [
            server_key(backend, settings.address)
            for backend, settings in zip(BACKENDS, servers, strict=True)
            if settings is not None
        ]

    @property
    def exposure_mode(self) -> ExposureMode:
        """The mode it says; unsaid, Gateway, but for an environment that names an Ingress
        class and no Gateway: one made before Gateway mode existed keeps its Ingresses
        through an upgrade instead of losing them."""
        if self.spec.ingress.mode is not None:
            return self.spec.ingress.mode
        if self.spec.gateway is None and self.spec.ingress.class_name is not None:
            return "Ingress"
        return "Gateway"

    @property
    def entry_namespace(self) -> str | None:
        """Where external traffic comes from: the Gateway's namespace, or the Ingress
        controller's (None: Gateway mode without a Gateway, so nothing comes in)."""
        if self.exposure_mode == "Ingress":
            return self.spec.ingress.controller_namespace
        return self.spec.gateway.namespace if self.spec.gateway else None

    @property
    def protected(self) -> bool:
        """SPEC §3.1: promoting here needs a right, and no role is shared with an unprotected
        environment (§5). Default: production and any environment promoted from another."""
        if self.spec.protected is not None:
            return self.spec.protected
        return self.name == PRODUCTION or self.spec.promotion.from_ is not None


# --- BandsyService -----------------------------------------------------------------------------


class ImageRepository(ApiModel):
    repository: str


class ImageTag(ApiModel):
    tag: str


class HealthCheck(ApiModel):
    path: str


class Resources(ApiModel):
    requests: dict[str, Quantity] = Field(default_factory=dict)
    limits: dict[str, Quantity] = Field(default_factory=dict)


class GenerateSecret(ApiModel):
    length: int = Field(default=48, ge=16, le=128)


class SecretKey(ApiModel):
    name: str
    generate: GenerateSecret | None = None


class PostgresUse(ApiModel):
    enabled: bool = False
    extensions: tuple[str, ...] = ()
    reclaim_policy: ReclaimPolicy = "Retain"
    # SQL run as the service's role on a mirrored copy before anything connects (SPEC §11).
    scrub: str | None = None


class BackendUse(ApiModel):
    enabled: bool = False


class Migrations(ApiModel):
    """SPEC §11: run before a new image rolls out, as a Job of that image (once per image and
    environment). ``command``/``args`` replace the image's entrypoint/arguments when set."""

    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    timeout_seconds: int = Field(default=600, ge=10, le=86400)
    backoff_limit: int = Field(default=0, ge=0, le=10)


class Autoscaling(ApiModel):
    """SPEC §12: a HorizontalPodAutoscaler on CPU keeps replicas between the bounds; the
    operator then never sets the Deployment's replicas."""

    min_replicas: int = Field(default=2, ge=1, le=50)
    max_replicas: int = Field(ge=1, le=50)
    # Percent of the CPU request (which the HPA needs: the container's or the LimitRange's).
    target_cpu_utilization: int = Field(default=80, ge=1, le=500, alias="targetCPUUtilization")

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("autoscaling.minReplicas may not exceed maxReplicas")
        return self


class Egress(ApiModel):
    """SPEC §12: an address outside the cluster the service's pods may connect to: a CIDR, or
    a host name (the addresses it resolves to, refreshed at each resync)."""

    cidr: str | None = None
    host: str | None = None
    ports: tuple[int, ...] = ()  # none: every port
    protocol: Literal["TCP", "UDP"] = "TCP"

    @model_validator(mode="after")
    def _one_target(self) -> Egress:
        if (self.cidr is None) == (self.host is None):
            raise ValueError("an egress entry has exactly one of cidr and host")
        if self.cidr is not None:
            ipaddress.ip_network(self.cidr, strict=False)  # ValueError names the problem
        if any(not 1 <= port <= 65535 for port in self.ports):
            raise ValueError("egress ports are 1-65535")
        return self


class Metrics(ApiModel):
    """SPEC §12: where the service's pods serve Prometheus metrics (a ServiceMonitor scrapes
    them where the Prometheus Operator's CRDs exist)."""

    port: int = Field(ge=1, le=65535)
    path: str = "/metrics"


class ServiceEnvironment(ApiModel):
    image: ImageTag
    replicas: int | None = Field(default=None, ge=0, le=50)
    autoscaling: Autoscaling | None = None
    resources: Resources | None = None
    config: dict[str, str] = Field(default_factory=dict)


class ServiceSpec(ApiModel):
    owner: str | None = None  # a team's group (SPEC §10); enforced by admission, not here
    image: ImageRepository
    port: int | None = Field(default=None, ge=1, le=65535)
    external: bool = False
    health_check: HealthCheck | None = None
    replicas: int = Field(default=1, ge=0, le=50)
    autoscaling: Autoscaling | None = None
    resources: Resources = Resources()
    config: dict[str, str] = Field(default_factory=dict)
    secrets: tuple[SecretKey, ...] = ()
    postgres: PostgresUse = PostgresUse()
    redis: BackendUse = BackendUse()
    mongo: BackendUse = BackendUse()
    depends_on: tuple[str, ...] = ()
    egress: tuple[Egress, ...] = ()
    migrations: Migrations | None = None
    metrics: Metrics | None = None
    suspend: bool = False
    environments: dict[str, ServiceEnvironment] = Field(default_factory=dict)


class Service(ApiModel):
    meta: ObjectIdentity
    spec: ServiceSpec

    @property
    def name(self) -> str:
        return self.meta.name

    def resources_in(self, env: str) -> Resources:
        """Its resources in ``env``: the environment's override as a whole, else its default."""
        override = self.spec.environments[env].resources
        return override if override is not None else self.spec.resources

    def autoscaling_in(self, env: str) -> Autoscaling | None:
        """The environment's entry decides as a whole: its ``autoscaling``, else none when it
        sets ``replicas``, else the service's."""
        entry = self.spec.environments[env]
        if entry.autoscaling is not None or entry.replicas is not None:
            return entry.autoscaling
        return self.spec.autoscaling

    def replicas_in(self, env: str) -> int:
        """Its replicas in ``env`` (the fewest, when autoscaled): the environment's override,
        else its default."""
        autoscaling = self.autoscaling_in(env)
        if autoscaling is not None:
            return autoscaling.min_replicas
        override = self.spec.environments[env].replicas
        return override if override is not None else self.spec.replicas


def parse_identity(body: dict[str, Any]) -> ObjectIdentity:
    metadata = body.get("metadata") or {}
    return ObjectIdentity(
        name=metadata["name"],
        uid=metadata.get("uid", ""),
        generation=metadata.get("generation", 0),
        annotations=metadata.get("annotations") or {},
    )


def parse_environment(body: dict[str, Any]) -> Environment:
    """Raises pydantic.ValidationError on a spec the CRD should have refused."""
    return Environment(
        meta=parse_identity(body), spec=EnvironmentSpec.model_validate(body.get("spec") or {})
    )


def parse_service(body: dict[str, Any]) -> Service:
    """Raises pydantic.ValidationError on a spec the CRD should have refused."""
    return Service(
        meta=parse_identity(body), spec=ServiceSpec.model_validate(body.get("spec") or {})
    )
