"""Promotion by CR edits on the real control plane (SPEC §6): a tag walks dev → pre → prod with
a soak time, is blocked by each gate, unblocks by itself, and break-glass is recorded; gates read
the upstream's readiness now; a new repository is a promotion; a blocked environment repairs."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from typing import Any

import pytest

from bandsy_dev.kubelet import make_deployment_crash, make_deployment_ready
from bandsy_operator.kube import KubeApi, ObjectRef
from conftest import KubectlRunner, OperatorProcess
from factories import environment_body, service_body, tags
from recorded_events import events_about
from waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
SOAK = 6


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


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(
        (dict(c) for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_),
        {},
    )


def blocked_reason(status: dict[str, Any]) -> str | None:
    for cond in status.get("conditions") or []:
        if cond["type"] == "PromotionBlocked" and cond["status"] == "True":
            return str(cond["reason"])
    return None


async def running_image(kube: KubeApi, env: str, service: str) -> str | None:
    obj = await kube.get(ObjectRef("apps/v1", "Deployment", env, service))
    if obj is None:
        return None
    return str(obj["spec"]["template"]["spec"]["containers"][0]["image"])


async def running(kube: KubeApi, env: str, service: str) -> str | None:
    image = await running_image(kube, env, service)
    return image.rpartition(":")[2] if image is not None else None


def seconds(stamp: str) -> float:
    moment = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")
    return moment.replace(tzinfo=datetime.UTC).timestamp()


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

    # Then the soak time: it holds release-1 out of production for SOAK seconds after preprod
    # ran it Ready, then opens by itself; nobody touches the CR.
    async def soaking() -> bool:
        assert blocked_reason(await env_status(kube, name, prod)) == "SoakTimeNotElapsed"
        return True

    await eventually(soaking, timeout=SOAK - 2)
    ready_since = seconds((await env_status(kube, name, pre))["readySince"])
    assert await running(kube, prod, name) is None
    await eventually(lambda: running(kube, prod, name), timeout=SOAK + 15)
    deployment = await kube.get(ObjectRef("apps/v1", "Deployment", prod, name))
    assert deployment is not None
    created = seconds(deployment["metadata"]["creationTimestamp"])
    assert created >= ready_since + SOAK, (created, ready_since)
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

    # Break glass: release-3 straight to production, recorded (SPEC §10: "<env>=<tag>").
    body = release("release-2", "release-3", "hotfix for checkout")
    body["metadata"]["annotations"]["bandsy.app/skip-gates"] = f"{prod}=release-3"
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
    # Who promoted, as the API server stamped it (the admin applies here).
    assert {e["promotedBy"] for e in entries} == {"bandsy-admin"}
    assert entries[1]["gatesSkipped"] is False
    assert entries[2]["changeCause"] == "first release"
    skipped = await events_about(kube, name, "GatesSkipped")
    assert len(skipped) == 1
    assert skipped[0]["type"] == "Warning"


async def _running_is(kube: KubeApi, env: str, service: str, tag: str) -> bool:
    return await running(kube, env, service) == tag


async def test_an_upstream_that_stops_being_ready_holds_the_gate(
    kube: KubeApi, kubectl: KubectlRunner, chain: tuple[str, str, str]
) -> None:
    """A tag that ran Ready upstream once but is not Ready there now (crash loop, scaled to
    zero) does not pass; readiness back, the soak counts again from its return."""
    pre, prod = chain[1], chain[2]
    name = f"unready-{uid()}"
    kubectl.apply(service_body(name, tags(**{pre: "release-1"}), port=80))
    await eventually(lambda: running(kube, pre, name))
    await make_deployment_ready(kube, pre, name)
    await eventually(lambda: summary_is(kube, name, pre, "release-1"))
    first_since = (await env_status(kube, name, pre))["readySince"]

    await make_deployment_crash(kube, pre, name)
    await eventually(lambda: summary_is(kube, name, pre, "release-1 (not ready)"))
    status = await env_status(kube, name, pre)
    assert "readyTag" not in status
    assert condition({"status": status}, "Ready")["reason"] == "NotReady"

    kubectl.apply(service_body(name, tags(**{pre: "release-1", prod: "release-1"}), port=80))

    async def not_ready_upstream() -> bool:
        status = await env_status(kube, name, prod)
        assert blocked_reason(status) == "NotReadyUpstream", status
        assert (
            "nothing is Ready there now"
            in condition({"status": status}, "PromotionBlocked")["message"]
        )
        return True

    await eventually(not_ready_upstream)
    await asyncio.sleep(SOAK + 1)  # longer than the soak: it must not be what holds it
    await not_ready_upstream()
    assert await running(kube, prod, name) is None

    await make_deployment_ready(kube, pre, name)

    async def soaking_again() -> bool:
        assert blocked_reason(await env_status(kube, name, prod)) == "SoakTimeNotElapsed"
        return True

    await eventually(soaking_again, timeout=SOAK - 2)
    assert (await env_status(kube, name, pre))["readySince"] > first_since
    await eventually(lambda: _running_is(kube, prod, name, "release-1"), timeout=SOAK + 15)

    # Scaled to zero runs nothing: not Ready for promotion.
    scaled = {"image": {"tag": "release-2"}, "replicas": 0}
    kubectl.apply(service_body(name, {pre: scaled, prod: {"image": {"tag": "release-2"}}}, port=80))
    await eventually(lambda: _running_is(kube, pre, name, "release-2"))
    await make_deployment_ready(kube, pre, name)  # what a controller reports for 0 replicas

    async def scaled_to_zero() -> bool:
        status = await env_status(kube, name, pre)
        assert condition({"status": status}, "Ready")["reason"] == "ScaledToZero", status
        assert "readyTag" not in status, status
        assert blocked_reason(await env_status(kube, name, prod)) == "NotReadyUpstream"
        return True

    await eventually(scaled_to_zero)
    await asyncio.sleep(SOAK + 2)  # the controller's report seen, and a soak's time passed
    await scaled_to_zero()
    assert await running(kube, prod, name) == "release-1"
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")


async def test_a_new_repository_is_a_promotion(
    kube: KubeApi, kubectl: KubectlRunner, chain: tuple[str, str, str]
) -> None:
    """``spec.image.repository`` changes every environment's image: each goes through its own
    gates, and each rollout is recorded."""
    pre, prod = chain[1], chain[2]
    name = f"repo-{uid()}"
    old, new = f"ghcr.io/feinwaru/{name}", f"ghcr.io/moved/{name}"
    both = tags(**{pre: "release-1", prod: "release-1"})
    kubectl.apply(service_body(name, both, port=80, image={"repository": old}))
    await eventually(lambda: running(kube, pre, name))
    await make_deployment_ready(kube, pre, name)
    await eventually(lambda: running(kube, prod, name), timeout=SOAK + 15)
    await make_deployment_ready(kube, prod, name)
    await eventually(lambda: summary_is(kube, name, prod, "release-1"))

    kubectl.apply(service_body(name, both, port=80, image={"repository": new}))
    await eventually(lambda: _image_is(kube, pre, name, f"{new}:release-1"))

    async def held() -> bool:
        status = await env_status(kube, name, prod)
        assert blocked_reason(status) == "NotReadyUpstream", status
        assert f"{new}:release-1" in condition({"status": status}, "PromotionBlocked")["message"]
        return True

    await eventually(held)
    assert await running_image(kube, prod, name) == f"{old}:release-1"
    await make_deployment_ready(kube, pre, name)
    await eventually(lambda: _image_is(kube, prod, name, f"{new}:release-1"), timeout=SOAK + 15)
    await make_deployment_ready(kube, prod, name)

    async def recorded() -> list[dict[str, Any]]:
        entries = (await env_status(kube, name, prod)).get("history") or []
        assert [e.get("image") for e in entries] == [f"{new}:release-1", f"{old}:release-1"]
        assert entries[0].get("readyAt"), entries
        return list(entries)

    await eventually(recorded)
    assert (await env_status(kube, name, prod))["appliedImage"] == f"{new}:release-1"
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")


async def test_a_blocked_environment_brings_back_a_deleted_deployment(
    kube: KubeApi, kubectl: KubectlRunner, operator: OperatorProcess
) -> None:
    """Frozen with a new tag waiting, the Deployment deleted by hand comes back with the image
    the environment last ran, not the one the gate holds."""
    env, name = f"frz-{uid()}", f"frz-{uid()}"
    kubectl.apply(environment_body(env, deletionPolicy="Delete"))
    kubectl.apply(service_body(name, tags(**{env: "v1"}), port=80))
    await eventually(lambda: _running_is(kube, env, name, "v1"))
    kubectl("patch", "benv", env, "--type=merge", "-p", '{"spec":{"promotion":{"freeze":true}}}')

    async def frozen() -> bool:
        environment = await kube.get(ObjectRef("bandsy.app/v1alpha1", "BandsyEnvironment", "", env))
        assert environment is not None
        return bool(environment["spec"]["promotion"]["freeze"])

    await eventually(frozen)
    kubectl.apply(service_body(name, tags(**{env: "v2"}), port=80))

    async def blocked() -> bool:
        return blocked_reason(await env_status(kube, name, env)) == "EnvironmentFrozen"

    await eventually(blocked)
    kubectl("-n", env, "delete", "deployment", name, "--wait=true")
    await eventually(lambda: _running_is(kube, env, name, "v1"), timeout=20)
    assert await blocked()
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")
    kubectl("delete", "benv", env, "--wait=true", "--timeout=60s")


async def _image_is(kube: KubeApi, env: str, service: str, image: str) -> bool:
    return await running_image(kube, env, service) == image
