"""Validation that needs other objects (SPEC §3): reported as conditions, never raised."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .models import BACKENDS, Environment, Service
from .naming import InvalidNameError, render_template

# Quota keys every container must then state, or the quota's admission refuses its pod; to the
# container defaults (spec.defaults) that state it for them, the one to suggest first. A default
# limit is also the default request (the API server defaults a LimitRange that way).
QUOTA_NEEDS: Mapping[str, tuple[str, ...]] = {
    "cpu": ("requests.cpu", "limits.cpu"),
    "requests.cpu": ("requests.cpu", "limits.cpu"),
    "memory": ("requests.memory", "limits.memory"),
    "requests.memory": ("requests.memory", "limits.memory"),
    "limits.cpu": ("limits.cpu",),
    "limits.memory": ("limits.memory",),
}
# Stands for any service when environments compare their user templates (they all contain it).
ANY_SERVICE = "svc"


@dataclass(frozen=True)
class Problem:
    reason: str
    message: str


def environment_problems(
    service: Service,
    env_name: str,
    environments: Mapping[str, Environment],
    services: Mapping[str, Service],
) -> list[Problem]:
    """Why ``service`` cannot be reconciled in ``env_name`` (empty when it can)."""
    env = environments.get(env_name)
    if env is None:
        return [
            Problem(
                "UnknownEnvironment",
                f"environment {env_name!r} does not exist (no BandsyEnvironment {env_name!r})",
            )
        ]
    problems = []
    for dependency in service.spec.depends_on:
        other = services.get(dependency)
        if other is None:
            problems.append(
                Problem("UnknownDependency", f"dependsOn {dependency!r}: no such BandsyService")
            )
        elif env_name not in other.spec.environments:
            problems.append(
                Problem(
                    "DependencyNotInEnvironment",
                    f"dependsOn {dependency!r}: it is not deployed in {env_name!r}",
                )
            )
        elif other.spec.port is None:
            problems.append(
                Problem(
                    "DependencyHasNoPort",
                    f"dependsOn {dependency!r}: it has no port to connect to",
                )
            )
    return problems


def exposure_refused(service: Service, env: Environment) -> str | None:
    """Why an external service is not exposed here (it still runs, reachable inside only)."""
    if not service.spec.external or service.name in env.spec.ingress.allowed_services:
        return None
    allowed = ", ".join(env.spec.ingress.allowed_services) or "none"
    return (
        f"environment {env.name!r} does not allow {service.name!r} to be external "
        f"(allowedServices: {allowed}); it runs without a way in from outside there"
    )


def _role(env: Environment, backend: str, service: str) -> tuple[str, str] | None:
    """(server, user) of ``service``'s account on ``backend`` in ``env``."""
    settings = getattr(env.spec, backend)
    if settings is None:
        return None
    try:
        user = render_template(settings.user_template, service, env.name)
    except InvalidNameError:
        return None
    return settings.address, user


def sharing(
    env: Environment, environments: Mapping[str, Environment], backend: str, service: str
) -> list[Environment]:
    """Other environments where ``service`` would log in as the same role on the same server
    (the SPEC §2 default ``{service}-user`` does that): one role, one password for all."""
    mine = _role(env, backend, service)
    if mine is None:
        return []
    return [
        other
        for other in sorted(environments.values(), key=lambda e: e.name)
        if other.name != env.name and _role(other, backend, service) == mine
    ]


def sharing_refused(
    env: Environment, environments: Mapping[str, Environment], backend: str, service: str
) -> list[str]:
    """SPEC §5, never across protection: the unprotected environments a protected one would
    share a role with (whoever reads Secrets there could log in here), unless it allows it."""
    settings = getattr(env.spec, backend)
    if not env.protected or settings is None or settings.allow_shared_credentials:
        return []
    return [o.name for o in sharing(env, environments, backend, service) if not o.protected]


def shared_credentials(
    env: Environment, environments: Mapping[str, Environment]
) -> tuple[list[str], list[str]]:
    """What the environment reports: the roles it shares (a warning), and those it refuses to
    share across protection, each as "<backend> users with <env> (<server>)"."""
    shared: list[str] = []
    refused: list[str] = []
    for backend in BACKENDS:
        settings = getattr(env.spec, backend)
        refusing = set(sharing_refused(env, environments, backend, ANY_SERVICE))
        for other in sharing(env, environments, backend, ANY_SERVICE):
            line = f"{backend} users with {other.name} ({settings.host}:{settings.port})"
            (refused if other.name in refusing else shared).append(line)
    return shared, refused


def quota_without_defaults(env: Environment) -> dict[str, str]:
    """Quota keys that no container default covers, each with the default that would: a pod
    whose containers do not ask for them is refused, and its Deployment reports FailedCreate."""
    defaults = env.spec.defaults
    given = {f"requests.{name}" for name in defaults.requests.given()}
    given |= {f"limits.{name}" for name in defaults.limits.given()}
    return {
        key: QUOTA_NEEDS[key][0]
        for key in sorted(env.spec.quota)
        if key in QUOTA_NEEDS and not given & set(QUOTA_NEEDS[key])
    }
