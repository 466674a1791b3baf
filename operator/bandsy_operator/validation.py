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
