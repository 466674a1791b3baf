"""The operator against the real control plane: objects of SPEC §4, drift, idempotence, status,
cross-object propagation, operator-side validation and deletion."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

import pytest

from bandsy_dev.kubelet import make_deployment_ready
from bandsy_operator.constants import (
    APPLIED_HASH_ANNOTATION,
    CONFIG_HASH_ANNOTATION,
    EXTERNAL_LABEL,
    FINALIZER,
    MANAGED_BY_LABEL,
    SERVICE_LABEL,
)
from bandsy_operator.kube import KubeApi, ObjectRef
from conftest import RESYNC_SECONDS, KubectlRunner, OperatorProcess, install_local_samples
from factories import environment_body, service_body, tags
from recorded_events import events_about
from status_watch import condition_of, statuses_written
from waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

KINDS = [
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("networking.k8s.io/v1", "Ingress"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("v1", "ResourceQuota"),
    ("v1", "LimitRange"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
]


def uid() -> str:
    return uuid.uuid4().hex[:6]


async def managed_objects(kube: KubeApi, namespace: str, service: str | None = None) -> set[str]:
    labels = {MANAGED_BY_LABEL: "bandsy-operator"}
    if service:
        labels[SERVICE_LABEL] = service
    found = set()
    for api_version, kind in KINDS:
        for obj in await kube.list(api_version, kind, namespace=namespace, labels=labels):
            found.add(f"{kind}/{obj['metadata']['name']}")
    return found


async def get(kube: KubeApi, api_version: str, kind: str, ns: str, name: str) -> dict[str, Any]:
    obj = await kube.get(ObjectRef(api_version, kind, ns, name))
    assert obj is not None, f"{kind} {ns}/{name} missing"
    return obj


async def bsvc(kube: KubeApi, name: str) -> dict[str, Any]:
    return await get(kube, "bandsy.app/v1alpha1", "BandsyService", "", name)


async def benv(kube: KubeApi, name: str) -> dict[str, Any]:
    return await get(kube, "bandsy.app/v1alpha1", "BandsyEnvironment", "", name)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return {}


@pytest.fixture(scope="module")
def sample_environments(
    kubectl: KubectlRunner, operator: OperatorProcess, servers: dict[str, str]
) -> list[str]:
    install_local_samples(kubectl, servers, ("Secret", "BandsyEnvironment"))
    return ["develop", "preprod", "production"]


async def test_three_environments_and_three_services_converge(
    kube: KubeApi, kubectl: KubectlRunner, sample_environments: list[str]
) -> None:
    s = uid()
    web, api, worker = f"web-{s}", f"api-{s}", f"worker-{s}"
    environments = {"develop": "develop-3f2a9c1", "preprod": "release-1.7.2"}
    kubectl.apply(
        service_body(
            api,
            tags(**environments, production="release-1.7.2"),
            port=9000,
            healthCheck={"path": "/healthz"},
            secrets=[{"name": "JWT_SECRET", "generate": {"length": 64}}],
        ),
        service_body(worker, tags(**environments, production="release-1.7.2"), dependsOn=[api]),
        service_body(
            web,
            {
                "develop": {"image": {"tag": "develop-3f2a9c1"}, "config": {"FEATURE_X": "true"}},
                "preprod": {"image": {"tag": "release-1.7.2"}},
                "production": {"image": {"tag": "release-1.7.2"}, "replicas": 3},
            },
            port=8080,
            config={"FEATURE_X": "false"},
            dependsOn=[api],
        ),
    )
    for env in sample_environments:
        namespace = await eventually(lambda env=env: get(kube, "v1", "Namespace", "", env))
        assert namespace["metadata"]["labels"]["bandsy.app/environment"] == env

        async def converged(env: str = env) -> bool:
            # Production only takes a tag that runs Ready in preprod: a kubelet keeps
            # reporting every Deployment that exists, upstream included.
            for other in sample_environments:
                for service in (api, worker, web):
                    if await kube.get(ObjectRef("apps/v1", "Deployment", other, service)):
                        await make_deployment_ready(kube, other, service)
            statuses = {
                s: (await bsvc(kube, s)).get("status", {}).get("environments", {})
                for s in (api, worker, web)
            }
            assert statuses  # shown by pytest when an assertion below fails
            assert await managed_objects(kube, env, api) == {
                f"ConfigMap/{api}-config",
                f"Secret/{api}-secrets",
                f"Deployment/{api}",
                f"Service/{api}",
                f"NetworkPolicy/{api}",
            }
            assert await managed_objects(kube, env, worker) == {
                f"ConfigMap/{worker}-config",
                f"Secret/{worker}-secrets",
                f"Deployment/{worker}",
                f"NetworkPolicy/{worker}",
            }
            assert await managed_objects(kube, env, web) == {
                f"ConfigMap/{web}-config",
                f"Secret/{web}-secrets",
                f"Deployment/{web}",
                f"Service/{web}",
                f"NetworkPolicy/{web}",
            }
            return True

        await eventually(converged, timeout=60)

        async def environment_policies(env: str = env) -> bool:
            # Applied by the environment's own reconcile, not ordered with the services'.
            assert {
                "NetworkPolicy/bandsy-default-deny",
                "NetworkPolicy/bandsy-allow-dns",
                "NetworkPolicy/bandsy-allow-ingress-controller",
                "NetworkPolicy/bandsy-allow-from-namespaces",
            } <= await managed_objects(kube, env)
            return True

        await eventually(environment_policies)

    async def wired() -> bool:
        # Each service's objects reflect its neighbours once they have been reconciled too.
        config = await get(kube, "v1", "ConfigMap", "develop", f"{web}-config")
        assert config["data"]["FEATURE_X"] == "true"
        assert config["data"]["LOG_LEVEL"] == "debug"
        url = f"http://{api}.develop.svc.cluster.local:9000"
        assert config["data"][f"API_{s.upper()}_URL"] == url
        policy = await get(kube, "networking.k8s.io/v1", "NetworkPolicy", "develop", api)
        sources = [
            p["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
            for p in policy["spec"]["ingress"][0]["from"]
        ]
        assert sources == sorted([web, worker])
        return True

    await eventually(wired)
    production = await get(kube, "apps/v1", "Deployment", "production", web)
    assert production["spec"]["replicas"] == 3
    assert "podAntiAffinity" in production["spec"]["template"]["spec"]["affinity"]
    quota = await eventually(lambda: get(kube, "v1", "ResourceQuota", "production", "bandsy-quota"))
    assert quota["spec"]["hard"]["pods"] == "60"
    # With it, container defaults: a pod that asks for nothing is not refused by the quota.
    defaults = await get(kube, "v1", "LimitRange", "production", "bandsy-defaults")
    assert defaults["spec"]["limits"][0]["defaultRequest"] == {"cpu": "100m", "memory": "128Mi"}

    # Status: rolling out until the (simulated) kubelet reports the pods ready.
    status = (await bsvc(kube, api))["status"]["environments"]["develop"]
    assert status["appliedTag"] == "develop-3f2a9c1"
    assert status["internalHost"] == f"{api}.develop.svc.cluster.local"
    for env in sample_environments:
        await make_deployment_ready(kube, env, api)

    async def api_ready() -> bool:
        obj = await bsvc(kube, api)
        summaries = {e: s["summary"] for e, s in obj["status"]["environments"].items()}
        assert summaries == {
            "develop": "develop-3f2a9c1",
            "preprod": "release-1.7.2",
            "production": "release-1.7.2",
        }
        assert condition(obj, "Ready")["status"] == "True"
        return True

    await eventually(api_ready)
    table = kubectl("get", "bsvc", api).stdout.splitlines()
    assert table[0].split() == [
        "NAME",
        "DEVELOP",
        "PREPROD",
        "PRODUCTION",
        "READY",
        "REASON",
        "AGE",
    ]
    assert table[1].split()[:6] == [
        api,
        "develop-3f2a9c1",
        "release-1.7.2",
        "release-1.7.2",
        "True",
        "Ready",
    ]
    # Status lists and the environments are applied whole: managedFields record each, not
    # each of its items.
    (status_fields,) = [
        entry["fieldsV1"]["f:status"]
        for entry in (await bsvc(kube, api))["metadata"]["managedFields"]
        if entry.get("subresource") == "status"
    ]
    assert status_fields["f:conditions"] == {}
    assert status_fields["f:inventory"] == {}
    assert status_fields["f:environments"] == {}


async def test_external_service_gets_https_ingress(
    kube: KubeApi, kubectl: KubectlRunner, operator: OperatorProcess
) -> None:
    env, web = f"ext-{uid()}", f"web-{uid()}"
    kubectl.apply(
        environment_body(
            env,
            ingress={
                "mode": "Ingress",
                "domain": "example.test",
                "allowedServices": [web],
                "className": "nginx",
                "clusterIssuer": "letsencrypt",
            },
            deletionPolicy="Delete",
        ),
        service_body(web, tags(**{env: "v1"}), port=8080, external=True),
    )

    async def ingress() -> dict[str, Any]:
        return await get(kube, "networking.k8s.io/v1", "Ingress", env, web)

    found = await eventually(ingress)
    host = f"{env}.{web}.example.test"
    assert found["spec"]["rules"][0]["host"] == host
    assert found["spec"]["tls"] == [{"hosts": [host], "secretName": f"{web}-tls"}]
    assert found["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
    # A service's objects are applied concurrently: the Ingress may come before the others.
    deployment = await eventually(lambda: get(kube, "apps/v1", "Deployment", env, web))
    assert deployment["spec"]["template"]["metadata"]["labels"]["bandsy.app/external"] == "true"
    config = await eventually(lambda: get(kube, "v1", "ConfigMap", env, f"{web}-config"))
    assert config["data"]["PUBLIC_URL"] == f"https://{host}"
    obj = await eventually(lambda: _with_url(kube, web))
    assert obj["status"]["url"] == f"https://{host}"
    kubectl("delete", "bsvc", web, "--wait=true", "--timeout=60s")
    kubectl("delete", "benv", env, "--wait=true", "--timeout=60s")


async def _with_url(kube: KubeApi, name: str) -> dict[str, Any] | None:
    obj = await bsvc(kube, name)
    return obj if (obj.get("status") or {}).get("url") else None


async def test_drift_is_repaired_and_unmanaged_objects_are_left_alone(
    kube: KubeApi, kubectl: KubectlRunner, sample_environments: list[str]
) -> None:
    name = f"drift-{uid()}"
    kubectl.apply(service_body(name, tags(develop="develop-1a2b3c4"), port=8000))
    await eventually(lambda: kube.get(ObjectRef("apps/v1", "Deployment", "develop", name)))
    # A service's objects are applied concurrently: the Deployment may come before the others.
    await eventually(lambda: kube.get(ObjectRef("v1", "ConfigMap", "develop", f"{name}-config")))
    policy = ObjectRef("networking.k8s.io/v1", "NetworkPolicy", "develop", name)
    await eventually(lambda: kube.get(policy))
    kubectl("-n", "develop", "create", "configmap", f"{name}-unmanaged", "--from-literal=a=b")
    kubectl("-n", "develop", "delete", "configmap", f"{name}-config")
    kubectl("-n", "develop", "scale", "deployment", name, "--replicas=7")
    kubectl(
        "-n",
        "develop",
        "patch",
        "networkpolicy",
        name,
        "--type=merge",
        "-p",
        '{"spec": {"ingress": [{}]}}',
    )

    async def repaired() -> bool:
        assert await kube.get(ObjectRef("v1", "ConfigMap", "develop", f"{name}-config"))
        deployment = await get(kube, "apps/v1", "Deployment", "develop", name)
        assert deployment["spec"]["replicas"] == 1
        policy = await get(kube, "networking.k8s.io/v1", "NetworkPolicy", "develop", name)
        assert not policy["spec"].get("ingress")
        return True

    await eventually(repaired, timeout=20)
    unmanaged = await get(kube, "v1", "ConfigMap", "develop", f"{name}-unmanaged")
    assert unmanaged["data"] == {"a": "b"}


async def test_an_object_in_the_way_is_refused_until_handed_over(
    kube: KubeApi, kubectl: KubectlRunner, sample_environments: list[str]
) -> None:
    """A new service's objects are created without being read first: one that already exists
    under the same name, made by someone else, must still be found and left alone."""
    name = f"taken-{uid()}"
    config_map = f"{name}-config"
    kubectl("-n", "develop", "create", "configmap", config_map, "--from-literal=OWNER=someone")
    kubectl.apply(service_body(name, tags(develop="develop-1a2b3c4"), port=8000))

    async def refused() -> dict[str, Any] | None:
        envs = (await bsvc(kube, name)).get("status", {}).get("environments") or {}
        ready = condition({"status": envs.get("develop") or {}}, "Ready")
        return ready if ready.get("reason") == "ObjectNotManaged" else None

    ready = await eventually(refused)
    assert f"ConfigMap develop/{config_map}" in ready["message"]
    # The rest of the service is applied; the ConfigMap is as its owner made it.
    await eventually(lambda: kube.get(ObjectRef("apps/v1", "Deployment", "develop", name)))
    config = await get(kube, "v1", "ConfigMap", "develop", config_map)
    assert config["data"] == {"OWNER": "someone"}
    assert MANAGED_BY_LABEL not in (config["metadata"].get("labels") or {})
    assert {f["manager"] for f in config["metadata"]["managedFields"]} == {"kubectl-create"}

    # Handed over with the label, it is the operator's at the next reconcile (the resync).
    kubectl(
        "-n", "develop", "label", "configmap", config_map, f"{MANAGED_BY_LABEL}=bandsy-operator"
    )

    async def taken() -> bool:
        config = await get(kube, "v1", "ConfigMap", "develop", config_map)
        assert config["data"].get("BANDSY_SERVICE") == name
        return (await refused()) is None

    await eventually(taken)
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")


async def test_an_object_of_ours_outside_the_inventory_is_read_not_overwritten(
    kube: KubeApi, kubectl: KubectlRunner, sample_environments: list[str]
) -> None:
    """New objects are created without a read, from values built for nothing existing. One that
    exists with our label (an inventory lost) must be read first: its generated value stays."""
    name = f"adopt-{uid()}"
    kept = "k" * 32
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": f"{name}-secrets",
                "namespace": "develop",
                "labels": {MANAGED_BY_LABEL: "bandsy-operator"},
            },
            "stringData": {"SESSION_KEY": kept},
        }
    )
    kubectl.apply(
        service_body(
            name,
            tags(develop="develop-1a2b3c4"),
            secrets=[{"name": "SESSION_KEY", "generate": {"length": 32}}],
        )
    )

    async def adopted() -> dict[str, Any]:
        secret = await get(kube, "v1", "Secret", "develop", f"{name}-secrets")
        assert APPLIED_HASH_ANNOTATION in (secret["metadata"].get("annotations") or {})
        return secret

    secret = await eventually(adopted)
    assert base64.b64decode(secret["data"]["SESSION_KEY"]).decode() == kept
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")


async def test_a_new_service_is_ready_after_two_status_writes(
    kube: KubeApi, kubectl: KubectlRunner, sample_environments: list[str]
) -> None:
    """Its first status, which records the inventory before any object exists, already says
    what the objects will say once created (rolling out); the next says Ready. The write
    between them, the same status again after the apply, costs nothing."""
    name = f"two-{uid()}"
    async with statuses_written(kube, name) as seen:
        kubectl.apply(service_body(name, tags(develop="develop-1a2b3c4"), port=8000))
        await eventually(lambda: make_deployment_ready(kube, "develop", name))

        async def ready() -> bool:
            return condition(await bsvc(kube, name), "Ready").get("status") == "True"

        await eventually(ready)
    created, *written = seen
    assert not created, seen  # as kubectl created it
    first = written[0]
    assert f"develop|apps/v1|Deployment|develop|{name}" in first["inventory"], seen
    assert condition_of(first, "Ready")["reason"] == "Progressing", first
    assert first["environments"]["develop"]["appliedTag"] == "develop-1a2b3c4", first
    assert len(written) == 2, written
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")


async def test_converged_objects_cost_no_writes(
    kube: KubeApi, kubectl: KubectlRunner, sample_environments: list[str]
) -> None:
    name = f"idle-{uid()}"
    kubectl.apply(
        service_body(name, tags(develop="develop-1a2b3c4", preprod="release-1"), port=8000)
    )
    await eventually(lambda: kube.get(ObjectRef("apps/v1", "Deployment", "preprod", name)))
    for env in ("develop", "preprod"):
        await eventually(lambda env=env: make_deployment_ready(kube, env, name))

    async def ready() -> bool:
        return condition(await bsvc(kube, name), "Ready").get("status") == "True"

    await eventually(ready)

    async def versions() -> dict[str, str]:
        found = {}
        for env in ("develop", "preprod"):
            for api_version, kind in KINDS:
                for obj in await kube.list(api_version, kind, namespace=env):
                    key = f"{env}/{kind}/{obj['metadata']['name']}"
                    found[key] = obj["metadata"]["resourceVersion"]
        for kind in ("BandsyService", "BandsyEnvironment"):
            for obj in await kube.list("bandsy.app/v1alpha1", kind):
                found[f"{kind}/{obj['metadata']['name']}"] = obj["metadata"]["resourceVersion"]
        return found

    await asyncio.sleep(RESYNC_SECONDS * 2)  # let in-flight work from other tests settle
    before = await versions()
    await asyncio.sleep(RESYNC_SECONDS * 2 + 1)  # two resync cycles
    after = await versions()
    environments = ("BandsyEnvironment/develop", "BandsyEnvironment/preprod")
    mine = {k: v for k, v in after.items() if name in k or k in environments}
    assert mine == {k: before[k] for k in mine}


async def test_environment_edit_propagates_and_new_environment_deploys(
    kube: KubeApi, kubectl: KubectlRunner, operator: OperatorProcess
) -> None:
    env, later, name = f"prop-{uid()}", f"late-{uid()}", f"prop-{uid()}"
    kubectl.apply(
        environment_body(env, config={"LOG_LEVEL": "info"}, deletionPolicy="Delete"),
        service_body(name, tags(**{env: "v1", later: "v1"})),
    )
    cm = ObjectRef("v1", "ConfigMap", env, f"{name}-config")

    async def log_level(expected: str) -> bool:
        obj = await kube.get(cm)
        return obj is not None and obj["data"].get("LOG_LEVEL") == expected

    await eventually(lambda: log_level("info"))

    async def unknown_environment() -> bool:
        stalled = condition(await bsvc(kube, name), "Stalled")
        assert (stalled.get("status"), stalled.get("reason")) == ("True", "UnknownEnvironment")
        return True

    await eventually(unknown_environment)
    kubectl.apply(environment_body(env, config={"LOG_LEVEL": "warn"}, deletionPolicy="Delete"))
    await eventually(lambda: log_level("warn"), timeout=15)

    kubectl.apply(environment_body(later, deletionPolicy="Delete"))
    await eventually(lambda: kube.get(ObjectRef("apps/v1", "Deployment", later, name)))

    async def recovered() -> bool:
        return condition(await bsvc(kube, name), "Stalled").get("status") == "False"

    await eventually(recovered)
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")
    kubectl("delete", "benv", env, later, "--wait=true", "--timeout=60s")


async def test_operator_side_validation_reports_and_keeps_objects(
    kube: KubeApi, kubectl: KubectlRunner, sample_environments: list[str]
) -> None:
    name = f"val-{uid()}"
    kubectl.apply(
        service_body(
            name, tags(develop="develop-1a2b3c4"), port=8000, secrets=[{"name": "STRIPE_API_KEY"}]
        ),
    )

    async def secret_missing() -> dict[str, Any]:
        obj = await bsvc(kube, name)
        assert condition(obj, "Ready").get("reason") == "SecretMissing"
        return obj

    obj = await eventually(secret_missing)
    assert "STRIPE_API_KEY" in condition(obj, "Ready")["message"]

    async def applied() -> set[str]:
        # A new service's first status is written before its objects: wait for all of them.
        listed = {kind for _, kind in KINDS}
        recorded = {
            f"{kind}/{obj_name}"
            for _, _, kind, namespace, obj_name in (
                entry.split("|") for entry in (await bsvc(kube, name))["status"]["inventory"]
            )
            if namespace == "develop" and kind in listed
        }
        found = await managed_objects(kube, "develop", name)
        assert found == recorded, (found, recorded)
        return found

    objects_before = await eventually(applied)

    # A dependency that does not exist: reported, nothing pruned.
    kubectl.apply(
        service_body(
            name,
            tags(develop="develop-1a2b3c4"),
            port=8000,
            secrets=[{"name": "STRIPE_API_KEY"}],
            dependsOn=["ghost"],
        ),
    )

    async def stalled() -> dict[str, Any]:
        cond = condition(await bsvc(kube, name), "Stalled")
        assert cond.get("reason") == "UnknownDependency", cond
        return cond

    cond = await eventually(stalled)
    assert "ghost" in cond["message"]
    assert await managed_objects(kube, "develop", name) == objects_before

    async def one_warning() -> bool:
        # The Event is posted right after the status write that the probe above saw.
        warnings = [e for e in await events_about(kube, name) if e["type"] == "Warning"]
        assert [e["reason"] for e in warnings].count("UnknownDependency") == 1, warnings
        return True

    await eventually(one_warning, timeout=10)
    await asyncio.sleep(RESYNC_SECONDS * 2)  # periodic checks add no second one
    await one_warning()

    # External where the environment does not allow it: it runs, without an Ingress, and says so.
    kubectl.apply(
        service_body(
            name,
            tags(develop="develop-1a2b3c4"),
            port=8000,
            external=True,
            secrets=[{"name": "STRIPE_API_KEY"}],
        ),
    )

    async def not_allowed() -> dict[str, Any]:
        obj = await bsvc(kube, name)
        assert condition(obj, "Stalled").get("status") == "False", obj["status"]
        cond = condition(obj, "Exposed")
        assert (cond.get("status"), cond.get("reason")) == ("False", "ExternalNotAllowed"), cond
        return cond

    assert "allowedServices" in (await eventually(not_allowed))["message"]
    assert await managed_objects(kube, "develop", name) == objects_before

    # A person fills in the provided secret: kept, and the pods roll.
    secret_name = f"{name}-secrets"
    deployment = await get(kube, "apps/v1", "Deployment", "develop", name)
    old_hash = deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
    kubectl.apply(
        service_body(
            name, tags(develop="develop-1a2b3c4"), port=8000, secrets=[{"name": "STRIPE_API_KEY"}]
        ),
    )
    value = base64.b64encode(b"sk_test_123").decode()
    kubectl(
        "-n",
        "develop",
        "patch",
        "secret",
        secret_name,
        "--type=merge",
        "-p",
        json.dumps({"data": {"STRIPE_API_KEY": value}}),
    )

    async def rolled() -> bool:
        deployment = await get(kube, "apps/v1", "Deployment", "develop", name)
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        return bool(annotations[CONFIG_HASH_ANNOTATION] != old_hash)

    await eventually(rolled, timeout=20)

    await asyncio.sleep(RESYNC_SECONDS * 2)
    secret = await get(kube, "v1", "Secret", "develop", secret_name)
    assert secret["data"]["STRIPE_API_KEY"] == value

    async def filled() -> bool:
        return condition(await bsvc(kube, name), "Ready")["reason"] != "SecretMissing"

    await eventually(filled)


async def test_generated_secret_is_kept_across_reconciles(
    kube: KubeApi, kubectl: KubectlRunner, sample_environments: list[str]
) -> None:
    name = f"gen-{uid()}"
    kubectl.apply(
        service_body(
            name,
            tags(develop="develop-1a2b3c4"),
            secrets=[{"name": "SESSION_KEY", "generate": {"length": 32}}],
        ),
    )
    ref = ObjectRef("v1", "Secret", "develop", f"{name}-secrets")
    first = await eventually(lambda: kube.get(ref))
    value = base64.b64decode(first["data"]["SESSION_KEY"]).decode()
    assert len(value) == 32
    kubectl.apply(
        service_body(
            name,
            tags(develop="develop-2b3c4d5"),
            secrets=[{"name": "SESSION_KEY", "generate": {"length": 32}}],
        ),
    )

    async def retagged() -> bool:
        deployment = await get(kube, "apps/v1", "Deployment", "develop", name)
        return bool(
            deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(
                ":develop-2b3c4d5"
            )
        )

    await eventually(retagged)
    again = await get(kube, "v1", "Secret", "develop", f"{name}-secrets")
    assert again["data"]["SESSION_KEY"] == first["data"]["SESSION_KEY"]
    assert APPLIED_HASH_ANNOTATION in again["metadata"]["annotations"]
    status = json.dumps((await bsvc(kube, name))["status"])
    assert value not in status
    assert value not in json.dumps(await events_about(kube, name))


async def test_deletion(kube: KubeApi, kubectl: KubectlRunner, operator: OperatorProcess) -> None:
    kept, dropped, name = f"keep-{uid()}", f"drop-{uid()}", f"del-{uid()}"
    kubectl.apply(
        environment_body(kept, deletionPolicy="Retain"),
        environment_body(dropped, deletionPolicy="Delete"),
        service_body(name, tags(**{kept: "v1", dropped: "v1"}), port=80),
    )
    for env in (kept, dropped):
        await eventually(lambda env=env: kube.get(ObjectRef("apps/v1", "Deployment", env, name)))

    # Removing an environment from the service removes its objects there.
    kubectl.apply(service_body(name, tags(**{kept: "v1"}), port=80))

    async def removed() -> bool:
        return not await managed_objects(kube, dropped, name)

    await eventually(removed)
    assert await managed_objects(kube, kept, name)

    # Delete policy: the namespace goes.
    kubectl("delete", "benv", dropped, "--wait=true", "--timeout=60s")
    await eventually(lambda: _gone(kubectl, "namespace", dropped), timeout=60)

    # Retain policy: namespace and contents stay, without our ownerReference.
    kubectl("delete", "benv", kept, "--wait=true", "--timeout=60s")
    namespace = await get(kube, "v1", "Namespace", "", kept)
    assert not namespace["metadata"].get("ownerReferences")
    assert "deletionTimestamp" not in namespace["metadata"]
    assert await managed_objects(kube, kept, name)

    # Deleting the service removes its objects: it has no database and no listener, so no
    # finalizer of ours either; the garbage collector follows their ownerReferences.
    service = await bsvc(kube, name)
    assert FINALIZER not in (service["metadata"].get("finalizers") or [])
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")

    async def collected() -> bool:
        return not await managed_objects(kube, kept, name)

    await eventually(collected, timeout=60)
    assert await get(kube, "networking.k8s.io/v1", "NetworkPolicy", kept, "bandsy-default-deny")


async def _gone(kubectl: KubectlRunner, *target: str) -> bool:
    return kubectl("get", *target, check=False).returncode != 0


async def test_suspended_service_is_left_alone(
    kube: KubeApi, kubectl: KubectlRunner, sample_environments: list[str]
) -> None:
    name = f"susp-{uid()}"
    kubectl.apply(service_body(name, tags(develop="develop-1a2b3c4"), port=8000))
    await eventually(lambda: kube.get(ObjectRef("v1", "ConfigMap", "develop", f"{name}-config")))
    kubectl.apply(service_body(name, tags(develop="develop-1a2b3c4"), port=8000, suspend=True))

    async def suspended() -> bool:
        obj = await bsvc(kube, name)
        status = ((obj.get("status") or {}).get("environments") or {}).get("develop") or {}
        assert status.get("summary") == "(suspended)", status
        assert condition(obj, "Ready").get("reason") == "Suspended"
        return True

    await eventually(suspended)
    kubectl("-n", "develop", "delete", "configmap", f"{name}-config")

    await asyncio.sleep(RESYNC_SECONDS * 2 + 1)
    assert await kube.get(ObjectRef("v1", "ConfigMap", "develop", f"{name}-config")) is None
    kubectl.apply(service_body(name, tags(develop="develop-1a2b3c4"), port=8000))
    await eventually(lambda: kube.get(ObjectRef("v1", "ConfigMap", "develop", f"{name}-config")))


async def test_revoked_exposure_removes_the_ingress_at_once(
    kube: KubeApi, kubectl: KubectlRunner, operator: OperatorProcess
) -> None:
    """Taking a service off an environment's allowedServices closes its public way in: the
    Ingress goes and its pods leave the ingress controller's NetworkPolicy allowance; the
    service keeps running, and says why it is not exposed."""
    env, web = f"rev-{uid()}", f"web-{uid()}"
    ingress = {"mode": "Ingress", "domain": "example.test", "allowedServices": [web]}
    kubectl.apply(
        environment_body(env, ingress=ingress, deletionPolicy="Delete"),
        service_body(web, tags(**{env: "v1"}), port=8080, external=True),
    )
    await eventually(lambda: get(kube, "networking.k8s.io/v1", "Ingress", env, web))
    kubectl.apply(
        environment_body(env, ingress={**ingress, "allowedServices": []}, deletionPolicy="Delete")
    )

    async def closed() -> bool:
        assert await kube.get(ObjectRef("networking.k8s.io/v1", "Ingress", env, web)) is None
        deployment = await get(kube, "apps/v1", "Deployment", env, web)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert EXTERNAL_LABEL not in labels, labels
        config = await get(kube, "v1", "ConfigMap", env, f"{web}-config")
        assert "PUBLIC_URL" not in config["data"]
        return True

    await eventually(closed, timeout=20)

    async def reported() -> dict[str, Any]:  # written right after the objects the checks saw
        obj = await bsvc(kube, web)
        exposed = condition(obj, "Exposed")
        assert (exposed["status"], exposed["reason"]) == ("False", "ExternalNotAllowed"), exposed
        return obj

    obj = await eventually(reported, timeout=10)
    assert "url" not in obj["status"]
    assert condition(obj, "Stalled")["status"] == "False"

    async def warned() -> bool:  # posted right after the status write the checks above saw
        refused = await events_about(kube, web, "ExternalNotAllowed")
        assert [e["type"] for e in refused] == ["Warning"], refused
        return True

    await eventually(warned, timeout=10)
    kubectl("delete", "bsvc", web, "--wait=true", "--timeout=60s")
    kubectl("delete", "benv", env, "--wait=true", "--timeout=60s")
