"""The test sessions' check that the shipped RBAC sufficed (tests/rbac_denials.py)."""

from __future__ import annotations

from rbac_denials import rbac_denials

DENIED = (
    "WARNING bandsy_operator.controller: cannot list our objects for the pass (networkpolicies."
    'networking.k8s.io is forbidden: User "system:serviceaccount:bandsy-system:bandsy-operator"'
    ' cannot list resource "networkpolicies" in API group "networking.k8s.io" at the cluster scope)'
)
TERMINATING = (
    "WARNING bandsy_operator.controller: reconcile BandsyService/web failed, retrying in 0.6 s: "
    'httproutes.gateway.networking.k8s.io "web" is forbidden: create not allowed while custom '
    "resource definition is terminating"
)


def test_only_rbac_refusals_count() -> None:
    assert rbac_denials(f"INFO started\n{DENIED}\nINFO done") == [DENIED]
    assert rbac_denials(TERMINATING) == []
