"""Suspending a service leaves everyone else's objects as they were (review issue 13, item 12):
its pods keep running, so the services it depends on must keep admitting their traffic."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from bandsy_dev.operator_process import KubectlRunner, OperatorProcess
from bandsy_operator.constants import API_VERSION, SERVICE_KIND
from bandsy_operator.kube import KubeApi, ObjectRef
from bandsy_operator.status import SUSPENDED
from factories import environment_body, service_body, tags
from waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

API_PORT = 9000
WEB_PORT = 8080
TAG = "v1"
MARKER = "BANDSY_TEST_MARKER"


async def get(kube: KubeApi, api_version: str, kind: str, ns: str, name: str) -> dict[str, Any]:
    obj = await kube.get(ObjectRef(api_version, kind, ns, name))
    assert obj is not None, f"{kind} {ns}/{name} missing"
    return obj


async def bsvc_status(kube: KubeApi, name: str) -> dict[str, Any]:
    return dict((await get(kube, API_VERSION, SERVICE_KIND, "", name)).get("status") or {})


def admits(policy: dict[str, Any], pod_labels: dict[str, str], port: int) -> bool:
    """Whether an ingress rule lets pods with these labels (same namespace) in on ``port``."""
    return any(
        port in {p["port"] for p in rule.get("ports") or []}
        and any(
            "podSelector" in peer
            and "namespaceSelector" not in peer
            and peer["podSelector"].get("matchLabels", {}).items() <= pod_labels.items()
            for peer in rule.get("from") or []
        )
        for rule in policy["spec"].get("ingress") or []
    )


async def test_suspending_a_dependent_keeps_its_traffic_admitted(
    kube: KubeApi, kubectl: KubectlRunner, operator: OperatorProcess
) -> None:
    s = uuid.uuid4().hex[:6]
    env, api, web = f"nb-{s}", f"api-{s}", f"web-{s}"
    kubectl.apply(
        environment_body(env, deletionPolicy="Delete"),
        service_body(api, tags(**{env: TAG}), port=API_PORT),
        service_body(web, tags(**{env: TAG}), port=WEB_PORT, dependsOn=[api]),
    )
    deployment = await eventually(lambda: get(kube, "apps/v1", "Deployment", env, web))
    web_pods: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]

    async def api_policy() -> dict[str, Any]:
        return await get(kube, "networking.k8s.io/v1", "NetworkPolicy", env, api)

    async def web_admitted() -> bool:
        return admits(await api_policy(), web_pods, API_PORT)

    await eventually(web_admitted)

    kubectl.apply(
        service_body(web, tags(**{env: TAG}), port=WEB_PORT, dependsOn=[api], suspend=True)
    )

    async def web_suspended() -> bool:
        environments = (await bsvc_status(kube, web)).get("environments") or {}
        return bool(environments.get(env, {}).get("summary") == SUSPENDED)

    # The operator has seen the suspension: every reconcile of api from now on knows of it.
    await eventually(web_suspended)

    # Make the operator reconcile api again, and see that reconcile through to its status.
    kubectl.apply(service_body(api, tags(**{env: TAG}), port=API_PORT, config={MARKER: s}))
    api_body = await get(kube, API_VERSION, SERVICE_KIND, "", api)
    generation = int(api_body["metadata"]["generation"])

    async def api_reconciled() -> bool:
        config = await get(kube, "v1", "ConfigMap", env, f"{api}-config")
        assert config["data"].get(MARKER) == s, config["data"]
        # Written after the reconcile's objects (its NetworkPolicy included) were applied.
        return int((await bsvc_status(kube, api)).get("observedGeneration", 0)) >= generation

    await eventually(api_reconciled)
    policy = await api_policy()
    assert admits(policy, web_pods, API_PORT), policy["spec"]

    kubectl("delete", "bsvc", web, api, "--wait=true", "--timeout=60s")
    kubectl("delete", "benv", env, "--wait=true", "--timeout=60s")
