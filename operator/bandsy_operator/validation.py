"""Validation that needs other objects (SPEC §3): reported as conditions, never raised."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .models import Environment, Service


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
    if service.spec.external and service.name not in env.spec.ingress.allowed_services:
        allowed = ", ".join(env.spec.ingress.allowed_services) or "none"
        problems.append(
            Problem(
                "ExternalNotAllowed",
                f"environment {env_name!r} does not allow {service.name!r} to be external "
                f"(allowedServices: {allowed})",
            )
        )
    return problems


def shared_credentials(env: Environment, environments: Mapping[str, Environment]) -> list[str]:
    """Other environments whose database users coincide with this one's: same server and a
    user template without ``{env}`` (the SPEC §2 default ``{service}-user`` does that)."""
    shared = []
    for backend in ("postgres", "redis", "mongo"):
        mine = getattr(env.spec, backend)
        if mine is None or "{env}" in mine.user_template:
            continue
        for other in sorted(environments.values(), key=lambda e: e.name):
            theirs = getattr(other.spec, backend)
            if (
                other.name != env.name
                and theirs is not None
                and (theirs.host, theirs.port) == (mine.host, mine.port)
                and theirs.user_template == mine.user_template
            ):
                shared.append(f"{backend} users with {other.name} ({mine.host}:{mine.port})")
    return shared
