"""Every malformed custom resource is refused by the API server itself, with a clear message."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from conftest import KubectlRunner
from factories import environment_body, service_body, tags

pytestmark = pytest.mark.integration

POSTGRES = {
    "host": "db.default.svc",
    "adminSecretRef": {"namespace": "default", "name": "pg-admin"},
}

INVALID_ENVIRONMENTS: list[tuple[str, dict[str, Any], str]] = [
    ("name too long", environment_body("a" * 21), "Too long"),
    ("name starts with a digit", environment_body("1dev"), "metadata.name must match"),
    ("pod security level", environment_body("e1", podSecurity="strict"), "Unsupported value"),
    (
        "promotes from itself",
        environment_body("e1", promotion={"from": "e1"}),
        "cannot be the environment itself",
    ),
    (
        "negative soak time",
        environment_body("e1", promotion={"soakSeconds": -1}),
        "greater than or equal to 0",
    ),
    (
        "production with Delete",
        environment_body("production", deletionPolicy="Delete"),
        "must have deletionPolicy Retain",
    ),
    (
        "lowercase config key",
        environment_body("e1", config={"log_level": "info"}),
        "config keys must match",
    ),
    ("postgres without host", environment_body("e1", postgres={"port": 5432}), "Required value"),
    (
        "image pull secret name",
        environment_body("e1", imagePullSecrets=["GHCR_pull"]),
        "should match",
    ),
    (
        "unknown sslMode",
        environment_body("e1", postgres={**POSTGRES, "sslMode": "strict"}),
        "Unsupported value",
    ),
    (
        "template without {service}",
        environment_body("e1", postgres={**POSTGRES, "userTemplate": "{env}-user"}),
        "must contain {service}",
    ),
    (
        "template with quoting tricks",
        environment_body("e1", postgres={**POSTGRES, "databaseTemplate": '{service}"; drop'}),
        "should match",
    ),
    (
        "egress to namespace and cidr",
        environment_body(
            "e1", postgres={**POSTGRES, "egressTo": {"namespace": "db", "cidr": "10.0.0.0/24"}}
        ),
        "exactly one of",
    ),
    (
        "egress cidr",
        environment_body("e1", postgres={**POSTGRES, "egressTo": {"cidr": "10.0.0.0/33"}}),
        "must be a CIDR",
    ),
    ("quota key", environment_body("e1", quota={"CPU": "1"}), "quota keys"),
    ("quota value", environment_body("e1", quota={"pods": "many"}), "should match"),
    (
        "default quantity",
        environment_body("e1", defaults={"requests": {"cpu": "a lot"}}),
        "should match",
    ),
    (
        "negative default",
        environment_body("e1", defaults={"limits": {"memory": "-1Gi"}}),
        "should match",
    ),
    (
        "default for another resource",
        environment_body("e1", defaults={"requests": {"gpu": "1"}}),
        'unknown field "spec.defaults.requests.gpu"',
    ),
    (
        "default request above the default limit",
        environment_body(
            "e1", defaults={"requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}}
        ),
        "defaults.requests.memory cannot exceed defaults.limits.memory",
    ),
    (
        "default cpu request above the default limit",
        environment_body("e1", defaults={"requests": {"cpu": 2}, "limits": {"cpu": "1500m"}}),
        "defaults.requests.cpu cannot exceed defaults.limits.cpu",
    ),
    ("ingress domain", environment_body("e1", ingress={"domain": "bandsy"}), "should match"),
    (
        "allowed service name",
        environment_body("e1", ingress={"allowedServices": ["Web"]}),
        "should match",
    ),
    ("exposure mode", environment_body("e1", ingress={"mode": "Nginx"}), "Unsupported value"),
    (
        "gateway without a namespace",
        environment_body("e1", gateway={"name": "shared"}),
        "namespace: Required value",
    ),
    (
        "a port for the owner's listener",
        environment_body(
            "e1",
            gateway={"name": "shared", "namespace": "gw", "sectionName": "https", "port": 8443},
        ),
        "port is that of the listeners the operator adds per host",
    ),
]

WEB = {"image": {"repository": "ghcr.io/feinwaru/web"}}
INVALID_SERVICES: list[tuple[str, dict[str, Any], str]] = [
    ("name too long", service_body("w" * 41, tags(develop="d1")), "Too long"),
    ("name starts with a digit", service_body("9web", tags(develop="d1")), "DNS label"),
    (
        "name with the reserved prefix",
        service_body("bandsy-default-deny", tags(develop="d1")),
        "may not start with bandsy-",
    ),
    ("missing image", {**service_body("web", tags(develop="d1")), "spec": {}}, "Required value"),
    (
        "image repository",
        service_body("web", tags(develop="d1"), image={"repository": "GHCR.io/Web"}),
        "should match",
    ),
    (
        "config key",
        service_body("web", tags(develop="d1"), config={"feature-x": "1"}),
        "config keys must match",
    ),
    (
        "key in config and secrets",
        service_body("web", tags(develop="d1"), config={"KEY": "1"}, secrets=[{"name": "KEY"}]),
        "both config and a secret",
    ),
    (
        "environment config key that is a secret",
        service_body(
            "web",
            {"develop": {"image": {"tag": "d1"}, "config": {"KEY": "1"}}},
            secrets=[{"name": "KEY"}],
        ),
        "both config (of an environment) and a secret",
    ),
    (
        "generated secret too short",
        service_body("web", tags(develop="d1"), secrets=[{"name": "K", "generate": {"length": 8}}]),
        "greater than or equal to 16",
    ),
    (
        "generated secret too long",
        service_body(
            "web", tags(develop="d1"), secrets=[{"name": "K", "generate": {"length": 200}}]
        ),
        "less than or equal to 128",
    ),
    (
        "secret name",
        service_body("web", tags(develop="d1"), secrets=[{"name": "session_key"}]),
        "should match",
    ),
    (
        "duplicate secret",
        service_body("web", tags(develop="d1"), secrets=[{"name": "K"}, {"name": "K"}]),
        "Duplicate value",
    ),
    ("tag with a space", service_body("web", tags(develop="release 1")), "should match"),
    ("latest outside develop", service_body("web", tags(production="latest")), "only allowed in"),
    (
        "depends on itself",
        service_body("web", tags(develop="d1"), dependsOn=["web"]),
        "cannot depend on itself",
    ),
    (
        "Delete reclaim with production",
        service_body(
            "web", tags(production="r1"), postgres={"enabled": True, "reclaimPolicy": "Delete"}
        ),
        "reclaimPolicy Delete is refused",
    ),
    (
        "too many replicas",
        service_body("web", tags(develop="d1"), replicas=51),
        "less than or equal to 50",
    ),
    (
        "negative replicas",
        service_body("web", tags(develop="d1"), replicas=-1),
        "greater than or equal to 0",
    ),
    (
        "environment replicas",
        service_body("web", {"develop": {"image": {"tag": "d1"}, "replicas": 60}}),
        "less than or equal to 50",
    ),
    (
        "external without port",
        service_body("web", tags(develop="d1"), external=True),
        "external service needs a port",
    ),
    (
        "health check without port",
        service_body("web", tags(develop="d1"), healthCheck={"path": "/healthz"}),
        "healthCheck needs a port",
    ),
    ("port out of range", service_body("web", tags(develop="d1"), port=70000), "65535"),
    ("environment name", service_body("web", tags(Develop="d1")), "environment names must"),
    (
        "environment without tag",
        service_body("web", {"develop": {"replicas": 1}}),
        "Required value",
    ),
    (
        "unknown reclaim policy",
        service_body("web", tags(develop="d1"), postgres={"reclaimPolicy": "Archive"}),
        "Unsupported value",
    ),
    (
        "autoscaling bounds reversed",
        service_body("web", tags(develop="d1"), autoscaling={"minReplicas": 5, "maxReplicas": 2}),
        "minReplicas may not exceed maxReplicas",
    ),
    (
        "autoscaling without a maximum",
        service_body("web", tags(develop="d1"), autoscaling={"minReplicas": 2}),
        "Required value",
    ),
    (
        "environment with replicas and autoscaling",
        service_body(
            "web",
            {"develop": {"image": {"tag": "d1"}, "replicas": 2, "autoscaling": {"maxReplicas": 3}}},
        ),
        "replicas or autoscaling, not both",
    ),
    (
        "egress with cidr and host",
        service_body("web", tags(develop="d1"), egress=[{"cidr": "10.0.0.0/8", "host": "a.b"}]),
        "exactly one of cidr and host",
    ),
    (
        "egress cidr",
        service_body("web", tags(develop="d1"), egress=[{"cidr": "10.0.0.300/8"}]),
        "must be an IP network",
    ),
    (
        "egress host",
        service_body("web", tags(develop="d1"), egress=[{"host": "API.example/x"}]),
        "should match",
    ),
    (
        "egress port",
        service_body("web", tags(develop="d1"), egress=[{"host": "a.b", "ports": [0]}]),
        "greater than or equal to 1",
    ),
]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(body, message, id=f"environment: {case}")
        for case, body, message in INVALID_ENVIRONMENTS
    ]
    + [
        pytest.param(body, message, id=f"service: {case}")
        for case, body, message in INVALID_SERVICES
    ],
)
def test_invalid_custom_resource_is_refused(
    kubectl: KubectlRunner, crds: None, body: dict[str, Any], message: str
) -> None:
    result = kubectl(
        "create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(body), check=False
    )
    assert result.returncode != 0, f"accepted: {body}"
    assert message in result.stderr, result.stderr


def test_valid_samples_are_accepted(kubectl: KubectlRunner, crds: None) -> None:
    for body in (
        environment_body("e1", postgres=POSTGRES, quota={"pods": "60", "requests.cpu": 8}),
        environment_body(
            "e1",
            quota={"requests.cpu": 8, "limits.memory": "16Gi"},
            defaults={"requests": {"cpu": 1, "memory": "1Gi"}, "limits": {"memory": "1024Mi"}},
        ),
        service_body("web", tags(develop="latest", production="release-1.7.2"), **WEB),
    ):
        kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(body))


def test_environment_namespace_is_immutable(kubectl: KubectlRunner, crds: None) -> None:
    name = "immutable-ns"
    kubectl("apply", "-f", "-", input=yaml.safe_dump(environment_body(name, namespace="ns-a")))
    try:
        for spec in ({"namespace": "ns-b"}, {}):
            changed = kubectl(
                "apply",
                "-f",
                "-",
                input=yaml.safe_dump(environment_body(name, **spec)),
                check=False,
            )
            assert changed.returncode != 0
            assert "spec.namespace is immutable" in changed.stderr
    finally:
        kubectl("delete", "benv", name, "--wait=false")
