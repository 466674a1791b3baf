"""Every naming convention of SPEC §2 and §4, in one place."""

from __future__ import annotations

import hashlib
import re

MAX_IDENTIFIER_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1

# Per-environment objects.
DEFAULT_DENY_POLICY = "bandsy-default-deny"
ALLOW_DNS_POLICY = "bandsy-allow-dns"
ALLOW_INGRESS_CONTROLLER_POLICY = "bandsy-allow-ingress-controller"
ALLOW_FROM_NAMESPACES_POLICY = "bandsy-allow-from-namespaces"
QUOTA = "bandsy-quota"
LIMIT_RANGE = "bandsy-defaults"
VIEWERS_BINDING = "bandsy-viewers"
EDITORS_BINDING = "bandsy-editors"
# The operator's own: it may list Secrets there, and only there (a pass lists them instead of
# reading one by one), through deploy/rbac.yaml's ClusterRole of that single right.
OPERATOR_SECRETS_BINDING = "bandsy-operator-secrets"
SECRET_LISTER_CLUSTER_ROLE = "bandsy-operator-secret-lister"  # noqa: S105
DNS_NAMESPACE = "kube-system"
# In the operator's namespace: the key of the pods' config hash.
CONFIG_HASH_KEY_SECRET = "bandsy-config-hash-key"  # noqa: S105 (a name, not a secret)


def config_map(service: str) -> str:
    return f"{service}-config"


def secrets(service: str) -> str:
    return f"{service}-secrets"


def backend_secret(service: str, backend: str) -> str:
    """``<svc>-postgres``, ``<svc>-redis``, ``<svc>-mongo``."""
    return f"{service}-{backend}"


def tls_secret(service: str) -> str:
    return f"{service}-tls"


def migration_job(service: str, image: str) -> str:
    """``<svc>-migrate-<hash>``: one Job per image, so a tag that migrated is recognised."""
    return f"{service}-migrate-{hashlib.sha256(image.encode()).hexdigest()[:8]}"


def migration_policy(service: str) -> str:
    """The migration pods' NetworkPolicy; ``bandsy-`` is reserved, so no service's clashes."""
    return f"bandsy-migrate-{service}"


def db_session_policy(service: str) -> str:
    """The NetworkPolicy of the service's `bandsyctl db` relay pods."""
    return f"bandsy-db-session-{service}"


def db_session_pod(service: str, suffix: str) -> str:
    return f"{service}-db-session-{suffix}"


def backup_cronjob(service: str) -> str:
    return f"{service}-backup"


def backup_policy(service: str) -> str:
    return f"bandsy-backup-{service}"


# In each environment's namespace: the S3 keys (and CA) of its backups, copied from the Secrets
# the environment names, so the backup Jobs read them there.
BACKUP_STORAGE_SECRET = "bandsy-backup-storage"  # noqa: S105 (a name, not a secret)


def scratch_database(database: str) -> str:
    """Where a backup of ``database`` is restored to be checked (owned by the service's role)."""
    return f"{database}-verify"


def mirror_database(database: str) -> str:
    """Where a mirror (SPEC §11) fills and scrubs the next copy of ``database``; after the
    swap it holds the replaced data, emptied by the next run."""
    return _bounded(database, "-mirror")


def exchange_database(database: str) -> str:
    """The name ``database`` passes through while it trades places with its mirror copy."""
    return _bounded(database, "-swap")


def side_databases(database: str) -> tuple[str, ...]:
    """The databases the operator makes next to a service's, owned by its role: they go when
    it goes (a restore's replaced ``-before-`` copy is kept on purpose)."""
    return (scratch_database(database), mirror_database(database), restore_database(database))


def mirror_cronjob(service: str) -> str:
    return f"{service}-mirror"


def restore_job(service: str, request: str) -> str:
    """``<svc>-restore-<hash>``: one Job per restore request (SPEC §11)."""
    return f"{service}-restore-{hashlib.sha256(request.encode()).hexdigest()[:8]}"


def restore_database(database: str) -> str:
    """Where a restore fills a new copy of ``database`` before it is swapped in."""
    return _bounded(database, "-restore")


def previous_database(database: str, request: str) -> str:
    """``<db>-before-<request>``: the database a restore replaced, kept until a cleanup. Named
    after the request, so a swap retried after a crash finds the name it used."""
    return _bounded(database, f"-before-{request.lower()}")


def _bounded(database: str, suffix: str) -> str:
    """``database`` + ``suffix`` within PostgreSQL's 63 bytes: a long name is cut and keeps a
    hash of itself, so two long names never meet."""
    name = database + suffix
    if len(name.encode()) <= MAX_IDENTIFIER_BYTES:
        return name
    digest = hashlib.sha256(database.encode()).hexdigest()[:8]
    room = MAX_IDENTIFIER_BYTES - len(suffix) - len(digest) - 1
    return f"{database.encode()[:room].decode(errors='ignore')}-{digest}{suffix}"


def external_host(environment: str, service: str, domain: str) -> str:
    return f"{environment}.{service}.{domain}"


def public_url(environment: str, service: str, domain: str) -> str:
    return f"https://{external_host(environment, service, domain)}"


MAX_LISTENER_NAME = 253  # Gateway API's SectionName
MAX_FIELD_MANAGER = 128  # the API server's limit


def _within(name: str, limit: int, prefix: str = "") -> str:
    """``prefix + name``, or, when that is too long, ``prefix`` and a hash of ``name``."""
    if len(prefix + name) <= limit:
        return prefix + name
    return prefix + hashlib.sha256(name.encode()).hexdigest()[:32]


def gateway_listener(environment: str, service: str, domain: str) -> str:
    """A listener the operator adds to the shared Gateway: named after its host, which no
    other environment or service has."""
    return _within(external_host(environment, service, domain), MAX_LISTENER_NAME)


def listener_field_manager(listener: str) -> str:
    """Each listener on the shared Gateway is applied by a field manager of its own, so
    applying one leaves the others' alone and an empty apply takes exactly it away."""
    return _within(listener, MAX_FIELD_MANAGER, prefix="bandsy-operator/")


def gateway_certificate(environment: str, service: str) -> str:
    """A host's Certificate (and its Secret) in the Gateway's namespace, which every
    environment shares. A dot joins the two: environment names have none, so no two pairs
    meet (``a-b`` + ``c`` and ``a`` + ``b-c`` would, with a dash)."""
    return f"{environment}.{service}-tls"


def internal_host(service: str, namespace: str) -> str:
    """The resolvable in-cluster name (the wiki's ``<svc>.<env>.cluster.local`` needs a rewrite)."""
    return f"{service}.{namespace}.svc.cluster.local"


def internal_url(service: str, namespace: str, port: int) -> str:
    return f"http://{internal_host(service, namespace)}:{port}"


def dependency_url_key(dependency: str) -> str:
    return f"{dependency.upper().replace('-', '_')}_URL"


class InvalidNameError(ValueError):
    """A template produced a name the backend cannot take safely."""


# A BandsyService's metadata.name: the CRD's rules (crds/bandsy.app_bandsyservices.yaml, checked
# against these by tests/unit/test_scaffold.py), for tools that write one before the API server
# sees it.
SERVICE_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")
RESERVED_PREFIX = "bandsy-"


def check_service_name(name: str) -> str:
    if not SERVICE_NAME.match(name):
        raise InvalidNameError(
            f"{name!r}: a service name is a DNS label of at most 40 characters "
            f"({SERVICE_NAME.pattern})"
        )
    if name.startswith(RESERVED_PREFIX):
        raise InvalidNameError(f"{name!r}: the prefix {RESERVED_PREFIX} is reserved")
    return name


_TEMPLATE_FIELD = re.compile(r"\{(\w+)\}")


def render_template(template: str, service: str, environment: str) -> str:
    """Fill ``{service}`` and ``{env}``; any other placeholder is an error."""

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key == "service":
            return service
        if key == "env":
            return environment
        raise InvalidNameError(f"unknown placeholder {{{key}}} in template {template!r}")

    return _TEMPLATE_FIELD.sub(fill, template)


def credential_secret(backend: str, server: str, user: str) -> str:
    """Canonical credential of one role on one server, in the operator's namespace. The hash
    keeps any host or role name inside Secret-name rules; labels say what it is."""
    digest = hashlib.sha256(f"{backend}|{server}|{user}".encode()).hexdigest()[:16]
    return f"credential-{backend}-{digest}"
