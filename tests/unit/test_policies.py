"""deploy/policies kept consistent by hand in three places; what they do is proven against the
real API server (tests/integration/test_rights.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
POLICIES = REPO_ROOT / "deploy" / "policies"
# The variables that say what a request promotes, repeated in each policy that needs them.
SHARED = (
    "oldSpec",
    "newSpec",
    "oldEnvs",
    "newEnvs",
    "oldAnnotations",
    "newAnnotations",
    "oldSkip",
    "newSkip",
    "sharedChanged",
    "promoted",
    "now",
)


def documents() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(POLICIES.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def policies() -> list[dict[str, Any]]:
    return [doc for doc in documents() if doc["kind"].endswith("AdmissionPolicy")]


def test_what_a_promote_is_reads_the_same_in_every_policy() -> None:
    blocks = {
        f"{doc['kind']}/{doc['metadata']['name']}": [
            variable for variable in doc["spec"]["variables"] if variable["name"] in SHARED
        ]
        for doc in policies()
        if any(v["name"] == "promoted" for v in doc["spec"].get("variables") or [])
    }
    assert set(blocks) == {
        "ValidatingAdmissionPolicy/bandsy-promote",
        "ValidatingAdmissionPolicy/bandsy-promoted-by",
        "MutatingAdmissionPolicy/bandsy-promoted-by",
    }
    first, *others = blocks.values()
    assert [v["name"] for v in first] == list(SHARED)
    for block in others:
        assert block == first


def test_every_policy_exempts_the_operator_and_is_bound() -> None:
    rbac = list(yaml.safe_load_all((REPO_ROOT / "deploy" / "rbac.yaml").read_text()))
    account = next(doc for doc in rbac if doc["kind"] == "ServiceAccount")["metadata"]
    operator = f"system:serviceaccount:{account['namespace']}:{account['name']}"
    bindings = {
        (doc["kind"].removesuffix("Binding"), doc["spec"]["policyName"])
        for doc in documents()
        if doc["kind"].endswith("PolicyBinding")
    }
    for policy in policies():
        conditions = {c["name"]: c["expression"] for c in policy["spec"]["matchConditions"]}
        assert conditions["not-the-operator"] == f"request.userInfo.username != '{operator}'"
        # A failing validation refuses; the mutating policy yields to the CRD's schema (its
        # comment says why), the validating one refuses what it left unstamped.
        expected = "Ignore" if policy["kind"] == "MutatingAdmissionPolicy" else "Fail"
        assert policy["spec"]["failurePolicy"] == expected
        assert (policy["kind"], policy["metadata"]["name"]) in bindings


def test_the_owner_rule_checks_every_environment_a_service_can_have() -> None:
    """One authorizer check per variable (CEL's cost limit), one variable per environment."""
    crd = yaml.safe_load((REPO_ROOT / "crds" / "bandsy.app_bandsyservices.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    limit = spec["properties"]["environments"]["maxProperties"]
    own = next(doc for doc in policies() if doc["metadata"]["name"] == "bandsy-own")
    checks = [v["name"] for v in own["spec"]["variables"] if v["name"].startswith("promoter")]
    assert checks == [f"promoter{i}" for i in range(limit)]
    (validation,) = own["spec"]["validations"]
    assert all(f"variables.{name}" in validation["expression"] for name in checks)


def test_the_kustomization_ships_every_file() -> None:
    kustomization = yaml.safe_load((POLICIES / "kustomization.yaml").read_text())
    files = {p.name for p in POLICIES.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    base = yaml.safe_load((REPO_ROOT / "deploy" / "kustomization.yaml").read_text())
    assert "policies" in base["resources"]
