"""What `bandsyctl status` makes of an HTTPRoute's and a Certificate's status conditions."""

from __future__ import annotations

from bandsy_operator.exposure_status import certificate_ready, exposure_refs, route_accepted
from factories import environment


def test_a_route_is_accepted_when_its_gateways_controller_says_so() -> None:
    assert route_accepted(None) == "absent"
    assert route_accepted({"status": {}}) == "pending"
    accepted = {"type": "Accepted", "status": "True", "reason": "Accepted"}
    resolved = {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs"}
    route = {"status": {"parents": [{"conditions": [resolved, accepted]}]}}
    assert route_accepted(route) == "True"
    refused = {"type": "Accepted", "status": "False", "reason": "NotAllowedByListeners"}
    assert route_accepted({"status": {"parents": [{"conditions": [refused]}]}}) == (
        "False: NotAllowedByListeners"
    )


def test_a_certificate_is_ready_when_cert_manager_says_so() -> None:
    assert certificate_ready(None) == "absent"
    ready = {"type": "Ready", "status": "True", "reason": "Ready"}
    assert certificate_ready({"status": {"conditions": [ready]}}) == "True"
    issuing = {"type": "Ready", "status": "False", "reason": "DoesNotExist"}
    assert certificate_ready({"status": {"conditions": [issuing]}}) == "False: DoesNotExist"


def test_the_certificate_read_is_the_operators_only() -> None:
    gateway = {"name": "shared", "namespace": "gateway-system"}
    route, certificate = exposure_refs(environment("develop", gateway=gateway), "web")
    assert str(route) == "gateway.networking.k8s.io/v1|HTTPRoute|develop|web"
    assert str(certificate) == "cert-manager.io/v1|Certificate|gateway-system|develop.web-tls"
    owner_tls = environment("develop", gateway={**gateway, "sectionName": "https"})
    assert exposure_refs(owner_tls, "web")[1] is None
