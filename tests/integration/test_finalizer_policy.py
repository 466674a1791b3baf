"""The API server puts the operator's finalizer on exactly the new services the operator would
put it on itself (deploy/policies/finalizer.yaml and ``needs_finalizer``: one rule, twice)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bandsy_operator.constants import FINALIZER
from bandsy_operator.manifest_yaml import dump_all
from bandsy_operator.reconcile.service import needs_finalizer
from bandsy_operator.world import World
from conftest import KubectlRunner
from factories import service_body, tags

pytestmark = [pytest.mark.integration]

SPECS: list[dict[str, Any]] = [
    {},
    {"port": 8080},
    {"port": 8080, "external": True},
    {"postgres": {"enabled": True}},
    {"postgres": {"enabled": False}, "redis": {"enabled": False}},
    {"redis": {"enabled": True}},
    {"mongo": {"enabled": True}},
    {"external": False, "mongo": {"enabled": False}},
]


@pytest.mark.parametrize("spec", SPECS, ids=json.dumps)
def test_a_created_service_has_the_finalizer_the_operator_would_add(
    crds: None, kubectl: KubectlRunner, spec: dict[str, Any]
) -> None:
    body = service_body("finalizer-probe", tags(develop="v1"), **spec)
    created = kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=dump_all([body]))
    stored = json.loads(created.stdout)
    has_it = FINALIZER in (stored["metadata"].get("finalizers") or [])
    assert has_it == needs_finalizer(World().observe_service(stored)), stored["metadata"]


def test_a_malformed_spec_is_refused_by_the_schema_not_the_policy(
    crds: None, kubectl: KubectlRunner
) -> None:
    body = service_body("finalizer-probe", tags(develop="v1"), postgres="yes")
    created = kubectl("create", "--dry-run=server", "-f", "-", input=dump_all([body]), check=False)
    assert created.returncode != 0
    assert "spec.postgres" in created.stderr, created.stderr
    assert "bandsy-finalizer" not in created.stderr, created.stderr
