"""A service carries the finalizer only when its deletion leaves what the garbage collector
cannot reclaim: database accounts or a listener on a shared Gateway."""

from __future__ import annotations

from typing import Any

import pytest

from bandsy_operator.reconcile.service import needs_finalizer
from bandsy_operator.world import World
from factories import service_body, tags

LISTENER_ENTRY = "develop|gateway.networking.k8s.io/v1|GatewayListener|gateways|shared/develop-web"
DEPLOYMENT_ENTRY = "develop|apps/v1|Deployment|develop|web"


def known(status: dict[str, Any] | None = None, **spec: Any) -> Any:
    body = service_body("web", tags(develop="v1"), **spec)
    body["metadata"] = {**body["metadata"], "uid": "u1", "resourceVersion": "1", "generation": 1}
    if status is not None:
        body["status"] = status
    return World().observe_service(body)


def test_a_service_of_objects_only_needs_none() -> None:
    assert not needs_finalizer(known({"inventory": [DEPLOYMENT_ENTRY]}, port=8080))


@pytest.mark.parametrize("backend", ["postgres", "redis", "mongo"])
def test_a_database_in_the_spec_needs_it(backend: str) -> None:
    assert needs_finalizer(known(**{backend: {"enabled": True}}))


def test_an_external_service_may_get_a_listener_and_needs_it() -> None:
    assert needs_finalizer(known(port=8080, external=True))


def test_accounts_recorded_need_it_after_the_spec_dropped_the_database() -> None:
    assert needs_finalizer(known({"databases": ["develop|postgres|pg:5432|web|web"]}))


def test_a_listener_recorded_needs_it_after_the_spec_dropped_external() -> None:
    assert needs_finalizer(known({"inventory": [DEPLOYMENT_ENTRY, LISTENER_ENTRY]}))


def test_an_invalid_spec_counts_only_what_is_recorded() -> None:
    invalid = known(replicas=-1, postgres={"enabled": True})
    assert invalid.model is None
    assert not needs_finalizer(invalid)
    assert needs_finalizer(known({"databases": ["develop|postgres|pg:5432|web|web"]}, replicas=-1))
