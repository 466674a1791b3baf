from __future__ import annotations

from typing import Any

import pytest

from bandsy_operator.apply import converged, handover, repair
from bandsy_operator.observation import Basis, Observed, ReadMode, basis


def policy(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "web", "namespace": "develop"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"], **spec},
    }


RULE = [{"from": [{"podSelector": {}}]}]


@pytest.mark.parametrize(
    ("desired", "live", "expected"),
    [
        (policy(), policy(), True),
        (policy(), policy(ingress=RULE), False),  # a rule added by hand is drift
        (policy(ingress=RULE), policy(ingress=RULE), True),
        (policy(ingress=RULE), policy(), False),
        (policy(), policy(ingress=[]), True),  # as stored: absent or empty, the same
    ],
    ids=["same", "rule-added", "same-rules", "rule-missing", "empty-list"],
)
def test_a_network_policy_has_exactly_our_rules(
    desired: dict[str, Any], live: dict[str, Any], expected: bool
) -> None:
    assert converged(desired, live) is expected


def test_a_repair_states_the_lists_someone_filled_in_empty() -> None:
    fixed = repair(policy(), policy(ingress=RULE))
    assert fixed["spec"]["ingress"] == []
    assert "egress" not in fixed["spec"]
    # Nothing to clear: what is applied is what was built (and rendered).
    assert repair(policy(), policy()) == policy()
    assert repair(policy(), None) == policy()


def test_other_kinds_may_carry_fields_we_do_not_set() -> None:
    desired = {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"A": "1"}}
    live = {**desired, "data": {"A": "1"}, "binaryData": {"B": "Ag=="}}
    assert converged(desired, live)


@pytest.mark.parametrize(
    ("mode", "recorded", "expected"),
    [
        (ReadMode.LIVE, True, Basis.READ),
        (ReadMode.LIVE, False, Basis.READ),
        (ReadMode.TRUSTED, True, Basis.REMEMBERED),
        (ReadMode.TRUSTED, False, Basis.PRESUMED_ABSENT),
    ],
)
def test_one_rule_decides_how_an_object_is_known(
    mode: ReadMode, recorded: bool, expected: Basis
) -> None:
    assert basis(mode, recorded) is expected


def test_an_observation_knows_its_version() -> None:
    assert Observed(None, Basis.READ).resource_version is None
    body = {"metadata": {"name": "s", "resourceVersion": "42"}}
    assert Observed(body, Basis.REMEMBERED).resource_version == "42"


def deployment(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "develop", "resourceVersion": "42"},
        "spec": {"template": {}, **spec},
    }


def test_replicas_left_out_are_handed_over_at_their_live_value() -> None:
    live = deployment(replicas=3)
    assert handover(deployment(), live) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        # Only while the object is as read: a scaling in between is not undone.
        "metadata": {"name": "web", "namespace": "develop", "resourceVersion": "42"},
        "spec": {"replicas": 3},
    }
    assert handover(deployment(replicas=2), live) is None  # stated: ours
    assert handover(deployment(), None) is None  # created without: nothing to keep
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {}}
    assert handover(service, {**service, "spec": {"replicas": 1}}) is None
