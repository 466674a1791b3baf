"""How an external service is reached (builders.exposure): Gateway mode's HTTPRoute, host
listener and Certificate; Ingress mode's Ingress; and why a service is not reachable."""

from __future__ import annotations

from typing import Any

from bandsy_operator import naming
from bandsy_operator.builders.exposure import (
    build_exposure_objects,
    build_listener,
    exposure_problem,
)
from bandsy_operator.builders.inputs import ServedKinds, ServiceInputs
from bandsy_operator.builders.meta import Manifest
from bandsy_operator.listeners import listener_of, listener_ref
from bandsy_operator.promotion import Image
from factories import environment, service, tags

GATEWAY = {"name": "shared", "namespace": "gateway-system"}
SERVED = ServedKinds(http_routes=True, certificates=True)


def inputs(
    kinds: ServedKinds = SERVED, allowed: tuple[str, ...] = ("web",), **env_spec: Any
) -> ServiceInputs:
    web = service("web", tags(develop="v1"), port=8080, external=True)
    env_spec.setdefault("gateway", GATEWAY)
    ingress = {"clusterIssuer": "letsencrypt", "allowedServices": list(allowed)}
    env_spec["ingress"] = {**ingress, **env_spec.get("ingress", {})}
    env = environment("develop", **env_spec)
    return ServiceInputs(web, env, Image(web.spec.image.repository, "v1"), b"k", kinds=kinds)


def by_kind(objects: list[Manifest]) -> dict[str, Manifest]:
    return {o["kind"]: o for o in objects}


def test_gateway_mode_routes_the_host_to_the_service_through_its_own_listener() -> None:
    built = by_kind(build_exposure_objects(inputs()))
    assert set(built) == {"HTTPRoute", "Certificate"}
    route = built["HTTPRoute"]
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["metadata"]["namespace"] == "develop"
    assert route["metadata"]["labels"]["bandsy.app/service"] == "web"
    assert route["spec"] == {
        "parentRefs": [
            {
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "namespace": "gateway-system",
                "name": "shared",
                "sectionName": "develop.web.bandsy.app",
            }
        ],
        "hostnames": ["develop.web.bandsy.app"],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "backendRefs": [{"group": "", "kind": "Service", "name": "web", "port": 8080}],
            }
        ],
    }


def test_the_hosts_certificate_lives_in_the_gateways_namespace_from_cert_manager() -> None:
    certificate = by_kind(build_exposure_objects(inputs()))["Certificate"]
    assert certificate["apiVersion"] == "cert-manager.io/v1"
    assert certificate["metadata"]["namespace"] == "gateway-system"
    assert certificate["metadata"]["name"] == "develop.web-tls"
    # Owned by the service (a cluster-scoped owner may own objects in any namespace).
    assert certificate["metadata"]["ownerReferences"][0]["kind"] == "BandsyService"
    assert certificate["spec"] == {
        "secretName": "develop.web-tls",
        "dnsNames": ["develop.web.bandsy.app"],
        "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": "letsencrypt"},
    }


def test_the_listener_serves_that_secret_for_routes_of_the_environment_only() -> None:
    listener = build_listener(inputs(gateway={**GATEWAY, "port": 8443}))
    assert listener is not None
    # Only what the operator states of the Gateway: no labels, owner or annotations of ours.
    assert listener["metadata"] == {"name": "shared", "namespace": "gateway-system"}
    assert listener["spec"]["listeners"] == [
        {
            "name": "develop.web.bandsy.app",
            "hostname": "develop.web.bandsy.app",
            "port": 8443,
            "protocol": "HTTPS",
            "tls": {
                "mode": "Terminate",
                "certificateRefs": [{"group": "", "kind": "Secret", "name": "develop.web-tls"}],
            },
            "allowedRoutes": {
                "namespaces": {
                    "from": "Selector",
                    "selector": {"matchLabels": {"kubernetes.io/metadata.name": "develop"}},
                },
                "kinds": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}],
            },
        }
    ]
    ref = listener_ref(listener)
    assert str(ref) == (
        "gateway.networking.k8s.io/v1|GatewayListener|gateway-system|shared/develop.web.bandsy.app"
    )
    gateway, name = listener_of(ref)
    assert (gateway.kind, gateway.namespace, gateway.name) == (
        "Gateway",
        "gateway-system",
        "shared",
    )
    assert name == "develop.web.bandsy.app"


def test_a_named_section_is_the_gateway_owners_listener_and_certificate() -> None:
    chosen = inputs(gateway={**GATEWAY, "sectionName": "https"})
    assert build_listener(chosen) is None
    built = by_kind(build_exposure_objects(chosen))
    assert set(built) == {"HTTPRoute"}
    assert built["HTTPRoute"]["spec"]["parentRefs"][0]["sectionName"] == "https"
    assert exposure_problem(chosen) is None


def test_ingress_mode_writes_the_ingress_and_nothing_of_the_gateway() -> None:
    ingress_mode = inputs(ingress={"mode": "Ingress"})
    built = by_kind(build_exposure_objects(ingress_mode))
    assert set(built) == {"Ingress"}
    assert built["Ingress"]["spec"]["tls"] == [
        {"hosts": ["develop.web.bandsy.app"], "secretName": "web-tls"}
    ]
    assert build_listener(ingress_mode) is None
    assert exposure_problem(ingress_mode) is None


def test_a_service_not_allowed_out_gets_no_way_in() -> None:
    closed = inputs(allowed=("api",))
    assert build_exposure_objects(closed) == []
    assert build_listener(closed) is None
    assert exposure_problem(closed) is None  # refused, which validation reports


def test_what_the_cluster_lacks_is_said_and_nothing_is_written_for_it() -> None:
    no_gateway = inputs(gateway=None)
    assert build_exposure_objects(no_gateway) == []
    assert build_listener(no_gateway) is None
    assert exposure_problem(no_gateway) is not None
    assert exposure_problem(no_gateway)[0] == "GatewayNotSet"  # type: ignore[index]

    no_routes = inputs(kinds=ServedKinds(certificates=True))
    assert build_exposure_objects(no_routes) == []
    assert build_listener(no_routes) is None
    assert exposure_problem(no_routes)[0] == "GatewayAPINotServed"  # type: ignore[index]

    # Routed, but nothing issues the host's certificate.
    no_cert_manager = inputs(kinds=ServedKinds(http_routes=True))
    assert set(by_kind(build_exposure_objects(no_cert_manager))) == {"HTTPRoute"}
    assert build_listener(no_cert_manager) is not None
    assert exposure_problem(no_cert_manager)[0] == "CertManagerNotServed"  # type: ignore[index]


def test_long_hosts_still_make_valid_listener_names_and_field_managers() -> None:
    domain = ".".join(["a" * 60] * 3) + ".example"
    listener = naming.gateway_listener("develop", "w" * 40, domain)
    assert len(listener) <= naming.MAX_LISTENER_NAME
    assert naming.listener_field_manager(listener).startswith("bandsy-operator/")
    assert len(naming.listener_field_manager(listener)) <= naming.MAX_FIELD_MANAGER
    short = naming.gateway_listener("develop", "web", "bandsy.app")
    assert naming.listener_field_manager(short) == "bandsy-operator/develop.web.bandsy.app"
    # No two environment/service pairs share a certificate in the Gateway's namespace.
    assert naming.gateway_certificate("a-b", "c") != naming.gateway_certificate("a", "b-c")


def test_an_environment_that_does_not_say_its_mode_keeps_an_ingress_it_had() -> None:
    gateway = {"name": "bandsy", "namespace": "gateway-system"}
    assert environment("develop").exposure_mode == "Gateway"
    assert environment("develop", gateway=gateway).exposure_mode == "Gateway"
    # Made before Gateway mode: an Ingress class and no Gateway.
    old = environment("develop", ingress={"className": "nginx"})
    assert old.exposure_mode == "Ingress"
    assert environment(
        "develop", ingress={"className": "nginx"}, gateway=gateway
    ).exposure_mode == ("Gateway")
    said = environment("develop", ingress={"className": "nginx", "mode": "Gateway"})
    assert said.exposure_mode == "Gateway"
    assert environment("develop", ingress={"mode": "Ingress"}).exposure_mode == "Ingress"
