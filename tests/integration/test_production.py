"""SPEC §12 on the real control plane with the session's operator: the autoscaler owns an
autoscaled Deployment's replicas (kube-controller-manager's HPA controller runs here),
ProductionReady and `bandsyctl doctor`, declared egress and pull secrets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bandsy_operator.kube import KubeApi, ObjectRef
from conftest import KubectlRunner, OperatorProcess
from factories import environment_body, service_body
from waiting import eventually, running

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
BIN = Path(sys.executable).parent


def uid() -> str:
    return uuid.uuid4().hex[:5]


async def live(kube: KubeApi, api_version: str, kind: str, env: str, name: str) -> Any:
    return await kube.get(ObjectRef(api_version, kind, env, name))


@contextlib.asynccontextmanager
async def replicas_seen(kube: KubeApi, env: str, name: str) -> AsyncIterator[list[int]]:
    """Every value of the Deployment's spec.replicas while the block runs (read every 20 ms:
    an autoscaler at a 2 s period leaves a wrong value in place far longer)."""
    seen: list[int] = []

    async def watch() -> None:
        while True:
            deployment = await live(kube, "apps/v1", "Deployment", env, name)
            replicas = int((deployment or {}).get("spec", {}).get("replicas", -1))
            if not seen or seen[-1] != replicas:
                seen.append(replicas)
            await asyncio.sleep(0.02)

    async with running(watch()):
        yield seen


async def test_the_autoscaler_owns_an_autoscaled_deployments_replicas(
    kube: KubeApi, kubectl: KubectlRunner, operator: OperatorProcess
) -> None:
    env, name = f"hpa-{uid()}", f"hpa-{uid()}"
    kubectl.apply(environment_body(env, deletionPolicy="Delete"))
    body = service_body(name, {env: {"image": {"tag": "v1"}}}, port=8080, replicas=3)
    kubectl.apply(body)

    async def replicas(expected: int) -> bool:
        deployment = await live(kube, "apps/v1", "Deployment", env, name)
        assert deployment is not None
        assert deployment["spec"]["replicas"] == expected, deployment["spec"]["replicas"]
        return True

    await eventually(lambda: replicas(3))
    async with replicas_seen(kube, env, name) as seen:
        # Autoscaling on: 3 is within the bounds and stays (not reset to 1 on the way).
        body["spec"]["autoscaling"] = {"minReplicas": 2, "maxReplicas": 5}
        kubectl.apply(body)
        hpa = await eventually(
            lambda: live(kube, "autoscaling/v2", "HorizontalPodAutoscaler", env, name)
        )
        assert hpa["spec"]["scaleTargetRef"]["name"] == name
        # The autoscaler moves it (a maximum of 2 now); a rollout and resyncs leave it there.
        body["spec"]["autoscaling"]["maxReplicas"] = 2
        kubectl.apply(body)
        await eventually(lambda: replicas(2))
        body["spec"]["config"] = {"ROLLOUT": "1"}
        kubectl.apply(body)

        async def rolled_out() -> bool:
            deployment = await live(kube, "apps/v1", "Deployment", env, name)
            env_vars = deployment["spec"]["template"]["metadata"]["annotations"]
            return bool(env_vars) and deployment["metadata"]["generation"] >= 3

        await eventually(rolled_out)
        await asyncio.sleep(5)  # two resyncs at the session's 2 s
        await replicas(2)
    assert 1 not in seen, seen
    assert seen[0] == 3
    assert seen[-1] == 2

    # The environment sets replicas: autoscaling is off there, the operator's number again.
    body["spec"]["environments"][env]["replicas"] = 4
    kubectl.apply(body)
    await eventually(lambda: replicas(4))

    async def hpa_gone() -> bool:
        return await live(kube, "autoscaling/v2", "HorizontalPodAutoscaler", env, name) is None

    await eventually(hpa_gone)
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")
    kubectl("delete", "benv", env, "--wait=true", "--timeout=60s")


def doctor(servers: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "bandsyctl"), "doctor", *args],
        env={**os.environ, "KUBECONFIG": servers["KUBECONFIG"]},
        capture_output=True,
        text=True,
        check=False,
    )


async def test_production_ready_and_the_doctor_name_each_failed_check_and_its_fix(
    kube: KubeApi, kubectl: KubectlRunner, servers: dict[str, str], operator: OperatorProcess
) -> None:
    dev, prod, name = f"dr-{uid()}", f"drp-{uid()}", f"dr-{uid()}"
    kubectl.apply(
        environment_body(dev, deletionPolicy="Delete"),
        environment_body(prod, protected=True, deletionPolicy="Delete"),
    )
    body = service_body(name, {dev: {"image": {"tag": "main"}}})
    kubectl.apply(body)

    async def production_ready(env: str, status: str) -> dict[str, Any]:
        found = await kube.get(ObjectRef("bandsy.app/v1alpha1", "BandsyService", "", name))
        conditions = (((found or {}).get("status") or {}).get("environments") or {}).get(env, {})
        ready = {c["type"]: c for c in conditions.get("conditions") or []}
        assert ready.get("ProductionReady", {}).get("status") == status, ready
        return dict(ready["ProductionReady"])

    failing = await eventually(lambda: production_ready(dev, "False"))
    assert failing["reason"] == "ChecksFailed"
    assert failing["message"].startswith("replicas: 1 replica (fix: set spec.environments.")
    # Only an unprotected environment fails: the doctor reports it and exits 0.
    listed = doctor(servers, name, "--failed", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    failed = {row["check"] for row in json.loads(listed.stdout)}
    assert failed == {
        "replicas",
        "probes",
        "memory",
        "antiAffinity",
        "disruptionBudget",
        "pinnedTag",
    }

    # In a protected environment the same failures make it exit 1.
    body["spec"]["environments"][prod] = {"image": {"tag": "v1.0.0"}}
    kubectl.apply(body)
    await eventually(lambda: production_ready(prod, "False"))
    refused = doctor(servers, name, "--env", prod)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "a protected environment fails" in refused.stderr
    assert "FAIL" in refused.stdout
    assert "spec.healthCheck.path" in refused.stdout

    # Fixed as each fix says: every check passes there.
    body["spec"].update(
        port=8080,
        healthCheck={"path": "/healthz"},
        replicas=2,
        resources={"requests": {"memory": "64Mi"}, "limits": {"memory": "128Mi"}},
    )
    kubectl.apply(body)
    passing = await eventually(lambda: production_ready(prod, "True"))
    assert passing["message"] == "6/6 checks pass"
    fixed = doctor(servers, name, "--env", prod)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert doctor(servers, "nobody").returncode == 1
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")
    kubectl("delete", "benv", dev, prod, "--wait=true", "--timeout=60s")


async def test_declared_egress_and_pull_secrets_reach_the_objects(
    kube: KubeApi, kubectl: KubectlRunner, operator: OperatorProcess
) -> None:
    env, name = f"eg-{uid()}", f"eg-{uid()}"
    kubectl.apply(environment_body(env, deletionPolicy="Delete", imagePullSecrets=["ghcr-pull"]))
    egress = [
        {"cidr": "203.0.113.0/24", "ports": [443]},
        {"host": "localhost", "ports": [5432]},
    ]
    kubectl.apply(service_body(name, {env: {"image": {"tag": "v1"}}}, egress=egress))

    async def policy() -> list[dict[str, Any]]:
        found = await live(kube, "networking.k8s.io/v1", "NetworkPolicy", env, name)
        assert found is not None
        rules: list[dict[str, Any]] = found["spec"].get("egress") or []
        assert len(rules) == 2, rules
        return rules

    cidr, host = await eventually(policy)
    assert cidr["to"] == [{"ipBlock": {"cidr": "203.0.113.0/24"}}]
    assert {"ipBlock": {"cidr": "127.0.0.1/32"}} in host["to"]
    assert host["ports"] == [{"protocol": "TCP", "port": 5432}]
    deployment = await live(kube, "apps/v1", "Deployment", env, name)
    assert deployment["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "ghcr-pull"}]
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")
    kubectl("delete", "benv", env, "--wait=true", "--timeout=60s")
