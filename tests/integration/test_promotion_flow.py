"""Promotion by CR edits on the real control plane (SPEC §6): a tag walks dev → pre → prod with
a soak time, is blocked by each gate, unblocks by itself, and break-glass is recorded."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from bandsy_dev.kubelet import make_deployment_ready
from bandsy_operator.kube import KubeApi, ObjectRef
from conftest import KubectlRunner, OperatorProcess
from factories import environment_body, service_body, tags
from recorded_events import events_about
from waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
SOAK = 3


def uid() -> str:
    return uuid.uuid4().hex[:5]


@pytest.fixture(scope="module")
def chain(kubectl: KubectlRunner, operator: OperatorProcess) -> tuple[str, str, str]:
    s = uid()
    dev, pre, prod = f"dev-{s}", f"pre-{s}", f"prod-{s}"
    kubectl.apply(
        environment_body(dev, deletionPolicy="Delete"),
        environment_body(pre, imagePolicy={"tagPattern": "^release-"}, deletionPolicy="Delete"),
        environment_body(
            prod,
            promotion={"from": pre, "soakSeconds": SOAK},
            imagePolicy={"tagPattern": "^release-"},
            deletionPolicy="Delete",
        ),
    )
    return dev, pre, prod


async def env_status(kube: KubeApi, service: str, env: str) -> dict[str, Any]:
    obj = await kube.get(ObjectRef("bandsy.app/v1alpha1", "BandsyService", "", service))
    assert obj is not None
    return dict(((obj.get("status") or {}).get("environments") or {}).get(env) or {})


def blocked_reason(status: dict[str, Any]) -> str | None:
    for cond in status.get("conditions") or []:
        if cond["type"] == "PromotionBlocked" and cond["status"] == "True":
            return str(cond["reason"])
    return None


async def running(kube: KubeApi, env: str, service: str) -> str | None:
    obj = await kube.get(ObjectRef("apps/v1", "Deployment", env, service))
    if obj is None:
        return None
    return str(obj["spec"]["template"]["spec"]["containers"][0]["image"].rpartition(":")[2])


async def summary_is(kube: KubeApi, service: str, env: str, expected: str) -> bool:
    status = await env_status(kube, service, env)
    assert status.get("summary") == expected, status
    return True


async def test_a_release_walks_through_the_gates(
    kube: KubeApi, kubectl: KubectlRunner, chain: tuple[str, str, str]
) -> None:
    pre, prod = chain[1], chain[2]
    name = f"svc-{uid()}"

    def release(pre_tag: str, prod_tag: str, cause: str) -> dict[str, Any]:
        body = service_body(name, tags(**{pre: pre_tag, prod: prod_tag}), port=80)
        body["metadata"]["annotations"] = {"bandsy.app/change-cause": cause}
        return body

    kubectl.apply(release("release-1", "release-1", "first release"))
    # Production waits for preprod to run release-1 Ready.
    await eventually(lambda: running(kube, pre, name))

    async def not_ready_upstream() -> bool:
        status = await env_status(kube, name, prod)
        assert blocked_reason(status) == "NotReadyUpstream", status
        assert status["summary"] == "release-1 (blocked)"
        return True

    await eventually(not_ready_upstream)
    assert await running(kube, prod, name) is None
    await make_deployment_ready(kube, pre, name)

    # Then the soak time; it opens by itself, nobody touches the CR.
    async def soaking() -> bool:
        await make_deployment_ready(kube, pre, name)  # a kubelet keeps reporting
        reason = blocked_reason(await env_status(kube, name, prod))
        # The soak may already be over when we look: then the tag is on its way.
        return reason == "SoakTimeNotElapsed" or await running(kube, prod, name) == "release-1"

    await eventually(soaking, timeout=15)
    await eventually(lambda: running(kube, prod, name), timeout=SOAK + 15)
    await make_deployment_ready(kube, prod, name)
    await eventually(lambda: summary_is(kube, name, prod, "release-1"))

    # A tag the environment's policy refuses: blocked, release-1 keeps running.
    kubectl.apply(release("hotfix-2", "release-1", "bad tag"))

    async def policy() -> bool:
        status = await env_status(kube, name, pre)
        assert blocked_reason(status) == "TagPolicyViolation", status
        assert status["summary"] == "hotfix-2 (blocked)"
        return True

    await eventually(policy)
    assert await running(kube, pre, name) == "release-1"

    # Freeze production: release-2 is Ready upstream but cannot enter.
    kubectl("patch", "benv", prod, "--type=merge", "-p", '{"spec":{"promotion":{"freeze":true}}}')
    kubectl.apply(release("release-2", "release-2", "second release"))
    await eventually(lambda: _running_is(kube, pre, name, "release-2"))
    await make_deployment_ready(kube, pre, name)

    async def frozen() -> bool:
        return blocked_reason(await env_status(kube, name, prod)) == "EnvironmentFrozen"

    await eventually(frozen)
    await asyncio.sleep(SOAK + 1)
    assert await running(kube, prod, name) == "release-1"
    kubectl("patch", "benv", prod, "--type=merge", "-p", '{"spec":{"promotion":{"freeze":false}}}')
    await eventually(lambda: _running_is(kube, prod, name, "release-2"), timeout=20)
    await make_deployment_ready(kube, prod, name)

    # Break glass: release-3 straight to production, recorded.
    body = release("release-2", "release-3", "hotfix for checkout")
    body["metadata"]["annotations"]["bandsy.app/skip-gates"] = "release-3"
    kubectl.apply(body)
    await eventually(lambda: _running_is(kube, prod, name, "release-3"))
    await make_deployment_ready(kube, prod, name)

    async def history() -> list[dict[str, Any]]:
        entries = (await env_status(kube, name, prod)).get("history") or []
        assert [e["tag"] for e in entries] == ["release-3", "release-2", "release-1"], entries
        assert entries[0].get("readyAt"), entries
        return list(entries)

    entries = await eventually(history)
    assert entries[0]["gatesSkipped"] is True
    assert entries[0]["changeCause"] == "hotfix for checkout"
    assert entries[1]["gatesSkipped"] is False
    assert entries[2]["changeCause"] == "first release"
    skipped = await events_about(kube, name, "GatesSkipped")
    assert len(skipped) == 1
    assert skipped[0]["type"] == "Warning"


async def _running_is(kube: KubeApi, env: str, service: str, tag: str) -> bool:
    return await running(kube, env, service) == tag
