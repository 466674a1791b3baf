"""Small factories of custom-resource bodies, shared by unit and integration tests."""

from __future__ import annotations

from typing import Any

from bandsy_operator.models import Environment, Service, parse_environment, parse_service


def environment_body(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "bandsy.app/v1alpha1",
        "kind": "BandsyEnvironment",
        "metadata": {"name": name},
        "spec": spec,
    }


def service_body(name: str, environments: dict[str, Any], **spec: Any) -> dict[str, Any]:
    spec.setdefault("image", {"repository": f"ghcr.io/feinwaru/{name}"})
    return {
        "apiVersion": "bandsy.app/v1alpha1",
        "kind": "BandsyService",
        "metadata": {"name": name},
        "spec": {**spec, "environments": environments},
    }


def _stored(body: dict[str, Any], uid: str) -> dict[str, Any]:
    """The body as the API server would return it."""
    return {**body, "metadata": {**body["metadata"], "uid": uid, "generation": 1}}


def environment(name: str, **spec: Any) -> Environment:
    return parse_environment(_stored(environment_body(name, **spec), f"uid-env-{name}"))


def service(name: str, environments: dict[str, Any], **spec: Any) -> Service:
    return parse_service(_stored(service_body(name, environments, **spec), f"uid-svc-{name}"))


def tags(**by_env: str) -> dict[str, Any]:
    return {env: {"image": {"tag": tag}} for env, tag in by_env.items()}
