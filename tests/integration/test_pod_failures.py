"""Pod-level failures reach the service's status (SPEC §12) and hold promotion (§6), on the real
control plane; container defaults keep a quota from refusing pods silently.

There is no kubelet, deployment or ReplicaSet controller here: the tests play them as
``workloads`` describes (a ReplicaSet of the Deployment's revision, pods made from it, their
containers' states, the Deployment's status). Admission is the API server's own: Pod Security,
the quota and the LimitRange decide which pods exist.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import ResourceQuota

from bandsy_dev.kubelet import make_deployment_ready
from bandsy_operator.kube import KubeApi, ObjectRef
from conftest import RESYNC_SECONDS, KubectlRunner, OperatorProcess
from factories import environment_body, service_body, tags
from recorded_events import events_about
from waiting import eventually
from workloads import (
    crash_loop_back_off,
    create_pod,
    failed_create,
    image_pull_back_off,
    pod_of,
    report_deployment,
    report_pod,
    running_status,
    start_rollout,
    waiting_status,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
BANDSY = "bandsy.app/v1alpha1"
# What a Deployment whose pods are not available reports.
UNAVAILABLE = {"replicas": 1, "updatedReplicas": 1, "readyReplicas": 0, "availableReplicas": 0}


def uid() -> str:
    return uuid.uuid4().hex[:5]


@pytest.fixture(scope="module")
def chain(kubectl: KubectlRunner, operator: OperatorProcess) -> tuple[str, str]:
    """An environment and one that promotes from it, without a soak."""
    up, down = f"pf-{uid()}", f"pfdown-{uid()}"
    kubectl.apply(
        environment_body(up, deletionPolicy="Delete"),
        environment_body(down, promotion={"from": up, "soakSeconds": 0}, deletionPolicy="Delete"),
    )
    return up, down


async def service_obj(kube: KubeApi, name: str) -> dict[str, Any]:
    obj = await kube.get(ObjectRef(BANDSY, "BandsyService", "", name))
    assert obj is not None, name
    return obj


async def env_status(kube: KubeApi, service: str, env: str) -> dict[str, Any]:
    status = (await service_obj(kube, service)).get("status") or {}
    return dict((status.get("environments") or {}).get(env) or {})


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((dict(c) for c in status.get("conditions") or [] if c["type"] == type_), {})


async def ready_condition(kube: KubeApi, service: str, env: str, reason: str) -> dict[str, Any]:
    """The environment's Ready condition once it is False with ``reason``."""
    ready = condition(await env_status(kube, service, env), "Ready")
    assert (ready.get("status"), ready.get("reason")) == ("False", reason), ready
    return ready


async def is_ready(kube: KubeApi, service: str, env: str) -> bool:
    ready = condition(await env_status(kube, service, env), "Ready")
    assert ready.get("status") == "True", ready
    return True


async def deployment(kube: KubeApi, namespace: str, name: str) -> dict[str, Any] | None:
    return await kube.get(ObjectRef("apps/v1", "Deployment", namespace, name))


async def blocked_upstream(kube: KubeApi, service: str, env: str) -> bool:
    blocked = condition(await env_status(kube, service, env), "PromotionBlocked")
    assert (blocked.get("status"), blocked.get("reason")) == ("True", "NotReadyUpstream"), blocked
    return True


async def one_warning(kube: KubeApi, name: str, reason: str) -> dict[str, Any]:
    found = await events_about(kube, name, reason)
    assert [e["type"] for e in found] == ["Warning"], found
    return found[0]


async def serviceable(kube: KubeApi, namespace: str) -> None:
    """Pods need the namespace's default ServiceAccount, which its controller makes."""
    await eventually(lambda: kube.get(ObjectRef("v1", "ServiceAccount", namespace, "default")))


async def test_an_image_that_cannot_be_pulled_is_not_ready_and_holds_promotion(
    kube: KubeApi, kubectl: KubectlRunner, chain: tuple[str, str]
) -> None:
    up, down = chain
    name = f"pull-{uid()}"
    kubectl.apply(service_body(name, tags(**{up: "nope"}), port=80))
    await eventually(lambda: deployment(kube, up, name))
    await serviceable(kube, up)
    replicaset = await start_rollout(kube, up, name, "7d9f8c6b5", revision=1)
    pod = await create_pod(kube, replicaset, "x2k4q")
    await report_deployment(kube, up, name, **UNAVAILABLE)
    await report_pod(kube, pod, image_pull_back_off(pod))

    ready = await eventually(lambda: ready_condition(kube, name, up, "ImagePullBackOff"))
    pod_name = pod["metadata"]["name"]
    image = f"ghcr.io/feinwaru/{name}:nope"
    expected = f'ImagePullBackOff: pod {pod_name}: Back-off pulling image "{image}"'
    assert ready["message"] == expected
    top = condition((await service_obj(kube, name))["status"], "Ready")
    assert (top["status"], top["reason"]) == ("False", "ImagePullBackOff")
    assert top["message"] == f"{up}: {expected}"
    event = await eventually(lambda: one_warning(kube, name, "ImagePullBackOff"), timeout=10)
    assert pod_name in event["message"]

    # Downstream, the gate holds the tag: it is not Ready upstream.
    kubectl.apply(service_body(name, tags(**{up: "nope", down: "nope"}), port=80))
    await eventually(lambda: blocked_upstream(kube, name, down))
    assert await deployment(kube, down, name) is None

    # The kubelet's next attempt fails the same way: the same reason, no second Event.
    await report_pod(kube, pod, waiting_status(pod, "ErrImagePull", "manifest unknown"))

    async def retried() -> bool:
        ready = await ready_condition(kube, name, up, "ImagePullBackOff")
        assert ready["message"] == f"ErrImagePull: pod {pod_name}: manifest unknown", ready
        return True

    await eventually(retried)
    await asyncio.sleep(RESYNC_SECONDS * 2)  # periodic checks post nothing either
    await one_warning(kube, name, "ImagePullBackOff")

    # Pulled at last: Ready, and the gate lets the tag through.
    await report_pod(kube, pod, running_status(pod))
    await make_deployment_ready(kube, up, name)
    await eventually(lambda: is_ready(kube, name, up))
    await eventually(lambda: deployment(kube, down, name), timeout=20)
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")


async def test_a_crash_loop_is_not_ready_though_the_deployment_says_available(
    kube: KubeApi, kubectl: KubectlRunner, chain: tuple[str, str]
) -> None:
    """Between two crashes a container without a readiness probe runs, and its Deployment
    counts it available: the pod's kubelet says what it is. Once a new release replaces it,
    the old ReplicaSet's crashing pod no longer counts."""
    up, down = chain
    name = f"crash-{uid()}"
    kubectl.apply(service_body(name, tags(**{up: "release-1"}), port=80))
    await eventually(lambda: deployment(kube, up, name))
    await serviceable(kube, up)
    old = await start_rollout(kube, up, name, "5c4b3a291", revision=1)
    crashing = await create_pod(kube, old, "aaaaa")
    await report_pod(kube, crashing, crash_loop_back_off(crashing))
    await make_deployment_ready(kube, up, name)

    ready = await eventually(lambda: ready_condition(kube, name, up, "CrashLoopBackOff"))
    assert ready["message"] == (
        f"CrashLoopBackOff: pod {crashing['metadata']['name']}: container {name} exited with "
        "code 1 (Error)"
    )
    status = await env_status(kube, name, up)
    assert "readyTag" not in status, status
    # The program's termination message is its own: it may hold a secret.
    assert "last words" not in json.dumps((await service_obj(kube, name))["status"])
    await eventually(lambda: one_warning(kube, name, "CrashLoopBackOff"), timeout=10)

    kubectl.apply(service_body(name, tags(**{up: "release-1", down: "release-1"}), port=80))
    await eventually(lambda: blocked_upstream(kube, name, down))
    assert await deployment(kube, down, name) is None

    # release-2 rolls out; its pod runs while the old one still crashes on its way out.
    both = tags(**{up: "release-2", down: "release-2"})
    kubectl.apply(service_body(name, both, port=80))

    async def rolled() -> bool:
        live = await deployment(kube, up, name)
        assert live is not None
        return bool(
            live["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":release-2")
        )

    await eventually(rolled)
    new = await start_rollout(kube, up, name, "7d9f8c6b5", revision=2)
    running = await create_pod(kube, new, "bbbbb")
    await report_pod(kube, running, running_status(running))
    await make_deployment_ready(kube, up, name)

    async def ready_again() -> bool:
        status = await env_status(kube, name, up)
        assert condition(status, "Ready")["status"] == "True", status
        assert status["readyTag"] == "release-2"
        return True

    await eventually(ready_again)
    assert await kube.get(ObjectRef("v1", "Pod", up, crashing["metadata"]["name"]))
    await eventually(lambda: deployment(kube, down, name), timeout=20)
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")


async def play_quota_controller(kube: KubeApi, namespace: str) -> None:
    """The quota's status, as its controller computes it: without it, admission enforces
    nothing."""
    quota = await kube.get(ObjectRef("v1", "ResourceQuota", namespace, "bandsy-quota"))
    assert quota is not None
    hard = quota["spec"]["hard"]
    await kube.client.patch(
        ResourceQuota.Status,
        "bandsy-quota",
        {"status": {"hard": hard, "used": dict.fromkeys(hard, "0")}},
        namespace=namespace,
    )


async def refused_creation(kube: KubeApi, pod: dict[str, Any]) -> str:
    """What the API server's admission says to the ReplicaSet controller creating ``pod``."""
    try:
        await kube.create(pod)
    except ApiError as error:
        return str(error.status.message)
    raise AssertionError(f"pod {pod['metadata']['name']} was admitted")


async def test_a_quota_without_defaults_refuses_pods_and_says_so(
    kube: KubeApi, kubectl: KubectlRunner, operator: OperatorProcess
) -> None:
    """A quota on requests refuses every pod that asks for none, as the services' do by
    default: the environment warns before it happens, the service reports the refusal, and
    container defaults make the same pod welcome."""
    env, down = f"pfq-{uid()}", f"pfqdown-{uid()}"
    quota = {"requests.cpu": "2", "requests.memory": "4Gi", "pods": "10"}
    kubectl.apply(
        environment_body(env, quota=quota, deletionPolicy="Delete"),
        environment_body(down, promotion={"from": env}, deletionPolicy="Delete"),
    )

    async def warned() -> dict[str, Any]:
        obj = await kube.get(ObjectRef(BANDSY, "BandsyEnvironment", "", env))
        assert obj is not None
        cond = condition(obj.get("status") or {}, "QuotaWithoutDefaults")
        assert (cond.get("status"), cond.get("reason")) == ("True", "QuotaWithoutDefaults"), cond
        return cond

    message = (await eventually(warned))["message"]
    assert "spec.defaults.requests.cpu" in message
    assert "spec.defaults.requests.memory" in message
    await eventually(lambda: one_warning(kube, env, "QuotaWithoutDefaults"), timeout=10)
    await eventually(lambda: kube.get(ObjectRef("v1", "ResourceQuota", env, "bandsy-quota")))
    await play_quota_controller(kube, env)

    name = f"quota-{uid()}"
    kubectl.apply(service_body(name, tags(**{env: "release-1", down: "release-1"}), port=80))
    await eventually(lambda: deployment(kube, env, name))
    await serviceable(kube, env)
    replicaset = await start_rollout(kube, env, name, "7d9f8c6b5", revision=1)
    refusal = await refused_creation(kube, pod_of(replicaset, "x2k4q"))
    assert "must specify requests.cpu" in refusal, refusal
    # The deployment controller copies its ReplicaSet's failure onto the Deployment.
    await report_deployment(
        kube,
        env,
        name,
        replicas=0,
        updatedReplicas=0,
        availableReplicas=0,
        unavailableReplicas=1,
        conditions=[failed_create(refusal)],
    )

    ready = await eventually(lambda: ready_condition(kube, name, env, "FailedCreate"))
    assert ready["message"] == f"FailedCreate: {refusal}"
    await eventually(lambda: one_warning(kube, name, "FailedCreate"), timeout=10)
    await eventually(lambda: blocked_upstream(kube, name, down))
    assert await deployment(kube, down, name) is None

    defaults = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
    kubectl.apply(
        environment_body(env, quota=quota, defaults=defaults, deletionPolicy="Delete"),
    )

    async def covered() -> bool:
        obj = await kube.get(ObjectRef(BANDSY, "BandsyEnvironment", "", env))
        assert obj is not None
        cond = condition(obj.get("status") or {}, "QuotaWithoutDefaults")
        assert cond.get("status") == "False", cond
        return await kube.get(ObjectRef("v1", "LimitRange", env, "bandsy-defaults")) is not None

    await eventually(covered)
    admitted = await create_pod(kube, replicaset, "x2k4q")
    resources = admitted["spec"]["containers"][0]["resources"]
    assert resources == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"memory": "256Mi"},
    }
    await report_pod(kube, admitted, running_status(admitted))
    await make_deployment_ready(kube, env, name)  # its conditions replace ReplicaFailure
    await eventually(lambda: is_ready(kube, name, env))
    await eventually(lambda: deployment(kube, down, name), timeout=20)
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")
    kubectl("delete", "benv", env, down, "--wait=true", "--timeout=60s")


async def test_the_limit_range_follows_the_defaults(
    kube: KubeApi, kubectl: KubectlRunner, operator: OperatorProcess
) -> None:
    env = f"pfl-{uid()}"
    quota = {"requests.cpu": "2", "limits.memory": "4Gi"}
    ref = ObjectRef("v1", "LimitRange", env, "bandsy-defaults")

    def apply(defaults: dict[str, Any] | None) -> None:
        spec: dict[str, Any] = {"quota": quota, "deletionPolicy": "Delete"}
        if defaults is not None:
            spec["defaults"] = defaults
        kubectl.apply(environment_body(env, **spec))

    async def limits_are(expected: dict[str, Any]) -> bool:
        found = await kube.get(ref)
        assert found is not None
        (limit,) = found["spec"]["limits"]
        assert {k: limit.get(k) for k in expected} == expected, limit
        return True

    async def warning(status: str) -> dict[str, Any]:
        obj = await kube.get(ObjectRef(BANDSY, "BandsyEnvironment", "", env))
        assert obj is not None
        cond = condition(obj.get("status") or {}, "QuotaWithoutDefaults")
        assert cond.get("status") == status, cond
        return cond

    apply({"requests": {"cpu": "100m"}})
    await eventually(lambda: limits_are({"type": "Container", "defaultRequest": {"cpu": "100m"}}))
    # A default request is no default limit: the quota on limits.memory still refuses pods.
    message = (await eventually(lambda: warning("True")))["message"]
    assert "limits.memory" in message
    assert "requests.cpu" not in message

    apply({"requests": {"cpu": "250m"}, "limits": {"memory": "512Mi"}})
    # The default limit is the default request where none is given.
    changed = {"defaultRequest": {"cpu": "250m", "memory": "512Mi"}, "default": {"memory": "512Mi"}}
    await eventually(lambda: limits_are(changed))
    await eventually(lambda: warning("False"))

    # Without the limit, no trace of it is left, its request included.
    apply({"requests": {"cpu": "250m"}})
    await eventually(lambda: limits_are({"defaultRequest": {"cpu": "250m"}, "default": None}))
    await eventually(lambda: warning("True"))

    apply(None)

    async def pruned() -> bool:
        return await kube.get(ref) is None

    await eventually(pruned)
    await eventually(lambda: warning("True"))

    async def warned_twice() -> bool:
        # One Warning each time it became True (not when it stays so); going back to False
        # posts nothing.
        warnings = await events_about(kube, env, "QuotaWithoutDefaults")
        assert [e["type"] for e in warnings] == ["Warning", "Warning"], warnings
        return True

    await eventually(warned_twice, timeout=10)
    assert not await events_about(kube, env, "DefaultsCoverQuota")
    kubectl("delete", "benv", env, "--wait=true", "--timeout=60s")
