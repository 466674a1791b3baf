"""The operator as it ships, on the real node (issue 14): its own image from the Dockerfile,
installed with `kubectl apply -k` of an overlay of deploy/, runs in-cluster under its
ServiceAccount; the samples' services run the test app, and everything is judged from what the
real kubelet and pods do: no status is written by a test here.

Root only, like the node; the module starts and stops an environment of its own.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
import boto3
import pytest

from bandsy_dev import testapp
from bandsy_dev.image import build_operator_image
from bandsy_dev.install import local_samples, sample_tags
from bandsy_dev.kube import REPO_ROOT
from bandsy_dev.local_env import LocalEnvironment, postgres_admin_args
from bandsy_dev.node_net import NODE_IP
from bandsy_dev.operator_process import KubectlRunner
from bandsy_operator import naming
from bandsy_operator.manifest_yaml import dump_all
from conftest import install_local_samples

pytestmark = pytest.mark.node
T = TypeVar("T")

ENVIRONMENTS = ("develop", "preprod", "production")
SERVICES = ("web", "api", "worker")
OVERLAY = REPO_ROOT / "hack" / "overlays" / "local"
# Tags beyond the samples': a later release, and one tag edits go back and forth between.
EXTRA_TAGS = (
    "develop-4b5c6d7",
    "release-1.7.3",
    "develop-5d6e7f8",
    "develop-6e7f8a9",
    "release-1.7.4",
)
MISSING_TAG = "develop-0000000"  # never imported: nothing can pull it
OPERATOR_PODS = "app.kubernetes.io/name=bandsy-operator"


@dataclass
class Cluster:
    env: LocalEnvironment
    kubectl: KubectlRunner
    variables: dict[str, str]

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def service(self, name: str) -> Any:
        return self.json("get", "bsvc", name)

    def bandsyctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "bandsyctl"), *args],
            capture_output=True,
            text=True,
            env={**os.environ, "KUBECONFIG": str(self.env.kube.kubeconfig)},
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done

    def pod_ips(self, namespace: str, service: str) -> list[str]:
        """The addresses of the service's Ready pods."""
        pods = self.json("-n", namespace, "get", "pods", "-l", f"bandsy.app/service={service}")
        ips = [
            p["status"]["podIP"]
            for p in pods["items"]
            if not p["metadata"].get("deletionTimestamp")
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions") or []
            )
        ]
        assert ips, f"no Ready pod of {service} in {namespace}"
        return ips

    def evidence(self) -> str:
        """Every Job and pod, and the operator replicas' recent log (tests/node/conftest.py)."""
        shown = []
        for args in (
            ("get", "cronjobs,jobs", "-A", "-o", "wide"),
            ("get", "pods", "-A", "-o", "wide"),
            ("-n", "bandsy-system", "logs", "-l", OPERATOR_PODS, "--prefix", "--tail=150"),
        ):
            done = self.kubectl(*args, check=False)
            shown.append(f"$ kubectl {' '.join(args)}\n{done.stdout}{done.stderr}")
        shown.append("Jobs and CronJobs deleted (the API server's audit log):")
        for line in self.env.kube.audit_log.read_text().splitlines():
            event = json.loads(line)
            ref = event.get("objectRef") or {}
            if event["verb"].startswith("delete") and ref.get("resource") in ("jobs", "cronjobs"):
                who = event["user"]["username"]
                at = event["requestReceivedTimestamp"]
                shown.append(
                    f"{at} {who} {ref['resource']} {ref.get('namespace')}/{ref.get('name')}"
                )
        return "\n".join(shown)


def eventually(probe: Callable[[], T], timeout: float, what: str, interval: float = 0.5) -> T:
    """``probe``'s first truthy result; an AssertionError meanwhile is retried."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if result := probe():
                return result
            last = f"last value {result!r}"
        except AssertionError as error:
            last = str(error)
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s ({last})"
        time.sleep(interval)


def http(url: str) -> str:
    """What a test app answers (the host reaches pods directly on the node's bridge)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (http:// built here)
            return str(response.read().decode())
    except urllib.error.HTTPError as error:
        return f"{error.code}: {error.read().decode()}"


def ask(cluster: Cluster, namespace: str, service: str, path: str, port: int = 8080) -> str:
    """``path`` of one Ready pod of ``service`` (the test app on ``port``)."""
    ip = cluster.pod_ips(namespace, service)[0]
    return http(f"http://{ip}:{port}{path}")


def environment_condition(obj: Any, env: str, type_: str) -> dict[str, Any]:
    status = ((obj.get("status") or {}).get("environments") or {}).get(env) or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    assert os.geteuid() == 0, "the node tests need root (bridge, firewall, mounts, cgroups)"
    # The audit log tells who wrote what (Cluster.evidence).
    env = LocalEnvironment(tmp_path_factory.mktemp("operator-node"), with_node=True, audit=True)
    try:
        env.start()
        node = env.node
        assert node is not None
        kubectl = KubectlRunner(str(env.kube.kubeconfig))
        variables = env.variables()
        # The operator's own image, built from the Dockerfile, and the test app's tags.
        assert node.import_image(build_operator_image()) == ["localhost/bandsy/operator:dev"]
        testapp.tag_image(node.import_image, [*sample_tags(), *EXTRA_TAGS])
        kubectl("apply", "--server-side", "-k", str(OVERLAY))
        kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        kubectl(
            "-n", "bandsy-system", "rollout", "status", "deploy/bandsy-operator", "--timeout=180s"
        )
        # Every sample (on the node: the test app, the databases where pods reach them).
        kinds = tuple({doc["kind"] for doc in local_samples(variables)})
        install_local_samples(kubectl, variables, kinds)
        yield Cluster(env, kubectl, variables)
    finally:
        env.stop()


def fill_in_stripe_key(cluster: Cluster) -> None:
    """api's provided secret, as a person fills it in (the operator never does)."""
    key = base64.b64encode(b"sk_test_on_the_node").decode()
    for env in ENVIRONMENTS:
        eventually(
            lambda env=env: (
                cluster.kubectl("-n", env, "get", "secret", "api-secrets", check=False).returncode
                == 0
            ),
            60,
            f"api-secrets in {env}",
        )
        cluster.kubectl(
            "-n",
            env,
            "patch",
            "secret",
            "api-secrets",
            "--type=merge",
            "-p",
            json.dumps({"data": {"STRIPE_API_KEY": key}}),
        )


def test_the_operator_runs_in_cluster_from_its_image(cluster: Cluster) -> None:
    deployment = cluster.json("-n", "bandsy-system", "get", "deploy", "bandsy-operator")
    # Its probes pass, the leader's and the standby's.
    assert deployment["status"].get("readyReplicas") == deployment["spec"]["replicas"] == 2
    pod = cluster.json("-n", "bandsy-system", "get", "pods", "-l", OPERATOR_PODS)["items"][0]
    container = pod["spec"]["containers"][0]
    assert container["image"] == "localhost/bandsy/operator:dev"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["serviceAccountName"] == "bandsy-operator"
    assert pod["spec"]["nodeName"]  # scheduled onto the real node


def test_the_samples_run_ready_through_the_real_kubelet(cluster: Cluster) -> None:
    fill_in_stripe_key(cluster)

    def all_ready() -> bool:
        items = {i["metadata"]["name"]: i for i in cluster.json("get", "bsvc")["items"]}
        for service in SERVICES:
            ready = next(c for c in items[service]["status"]["conditions"] if c["type"] == "Ready")
            assert ready["status"] == "True", (service, ready)
        return True

    eventually(all_ready, 180, "every sample service Ready", interval=1)
    for env in ENVIRONMENTS:
        for service in SERVICES:
            deployment = cluster.json("-n", env, "get", "deploy", service)
            status = deployment["status"]
            assert status["readyReplicas"] == deployment["spec"]["replicas"], (env, service)
    table = cluster.kubectl("get", "bsvc", *SERVICES).stdout
    print(table)
    rows = {line.split()[0]: line.split()[1:6] for line in table.splitlines()[1:]}
    for service in SERVICES:
        assert rows[service] == [
            "develop-3f2a9c1",
            "release-1.7.2",
            "release-1.7.2",
            "True",
            "Ready",
        ]


def test_a_service_logs_in_to_its_databases_from_its_pod(cluster: Cluster) -> None:
    for env, role in (("develop", "api-user"), ("production", "api-production-user")):
        assert ask(cluster, env, "api", "/db", 9000) == f"{role}|api-{env}"
    # Redis too, once the service asks for it: its projection reaches the pods and they roll.
    cluster.kubectl(
        "patch", "bsvc", "api", "--type=merge", "-p", '{"spec": {"redis": {"enabled": true}}}'
    )

    def pong() -> bool:
        return ask(cluster, "develop", "api", "/redis", 9000) == "PONG"

    eventually(pong, 90, "api's pods reach Redis with their projected user")
    assert ask(cluster, "develop", "api", "/env?key=PGSSLMODE", 9000) == "require"
    assert ask(cluster, "develop", "api", "/env?key=PGPASSWORD", 9000) == "set"


def test_network_policies_admit_exactly_what_was_declared(cluster: Cluster) -> None:
    names = "svc.cluster.local"
    for env in ("develop", "production"):  # api rolled for Redis: wait for the new pods
        cluster.kubectl("-n", env, "rollout", "status", "deploy/api", "--timeout=120s")

    def reaches(env: str, source: str, url: str, port: int = 8080) -> bool:
        # The enforcer learns a new pod's address a moment after it is Ready: allowed traffic
        # gets through within seconds, denied traffic never does (checked below).
        answer = ask(cluster, env, source, f"/fetch?url={url}", port)
        assert answer == "200", (env, source, url, answer)
        return True

    # A dependent reaches its dependency by name: DNS and the egress both work under deny.
    api_develop = f"http://api.develop.{names}:9000/healthz"
    eventually(lambda: reaches("develop", "web", api_develop), 30, "web -> api (develop)")
    eventually(lambda: reaches("develop", "worker", api_develop), 30, "worker -> api")
    api_production = f"http://api.production.{names}:9000/healthz"
    eventually(lambda: reaches("production", "web", api_production), 30, "web -> api (prod)")
    # api does not depend on web: refused.
    web_develop = f"http://web.develop.{names}:8080/healthz"
    refused = ask(cluster, "develop", "api", f"/fetch?url={web_develop}", 9000)
    assert refused.startswith("error:"), refused
    # develop cannot reach production, even by address.
    production_api = cluster.pod_ips("production", "api")[0]
    across = ask(cluster, "develop", "web", f"/fetch?url=http://{production_api}:9000/healthz")
    assert across.startswith("error:"), across


def test_generated_pods_meet_pod_security_restricted_without_warnings(cluster: Cluster) -> None:
    for env in ("preprod", "production"):
        namespace = cluster.json("get", "namespace", env)
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        template = cluster.json("-n", env, "get", "deploy", "web")["spec"]["template"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": "psa-check-",
                "namespace": env,
                "labels": {"psa-check": "true"},
            },
            "spec": template["spec"],
        }
        checked = cluster.kubectl(
            "create",
            "--dry-run=server",
            "-f",
            "-",
            "--warnings-as-errors",
            input=json.dumps(pod),
        )
        assert "Warning" not in checked.stderr, checked.stderr
    # The production sample has a quota and defaults: its pods were admitted with requests.
    pods = cluster.json("-n", "production", "get", "pods", "-l", "bandsy.app/service=worker")
    requests = pods["items"][0]["spec"]["containers"][0]["resources"]["requests"]
    assert requests.get("cpu"), requests
    assert requests.get("memory"), requests


def test_pod_failures_reach_the_status_and_hold_promotion(cluster: Cluster) -> None:
    """The real kubelet's ImagePullBackOff and CrashLoopBackOff, and the quota's FailedCreate,
    become Ready=False with that reason; production does not take a tag not Ready in preprod."""
    crash = {
        "apiVersion": "bandsy.app/v1alpha1",
        "kind": "BandsyService",
        "metadata": {"name": "crasher"},
        "spec": {
            "image": {"repository": cluster.variables["BANDSY_TEST_IMAGE"]},
            "port": 8080,
            "healthCheck": {"path": "/healthz"},
            "config": {"FAIL_AT_START": "1"},
            "environments": {
                "develop": {"image": {"tag": "develop-4b5c6d7"}},
                "preprod": {"image": {"tag": "release-1.7.3"}},
                "production": {"image": {"tag": "release-1.7.3"}},
            },
        },
    }
    missing = {
        **crash,
        "metadata": {"name": "puller"},
        "spec": {
            **crash["spec"],
            "config": {},
            "environments": {"develop": {"image": {"tag": MISSING_TAG}}},
        },
    }
    cluster.kubectl("apply", "--server-side", "-f", "-", input=dump_all([crash, missing]))

    def reason(service: str, env: str, expected: str) -> dict[str, Any]:
        ready = environment_condition(cluster.service(service), env, "Ready")
        assert ready.get("reason") == expected, ready
        return ready

    pulled = eventually(
        lambda: reason("puller", "develop", "ImagePullBackOff"), 120, "ImagePullBackOff"
    )
    assert MISSING_TAG in pulled["message"]
    crashed = eventually(
        lambda: reason("crasher", "preprod", "CrashLoopBackOff"), 120, "CrashLoopBackOff"
    )
    assert "exited with code 1" in crashed["message"]
    held = eventually(
        lambda: (
            environment_condition(cluster.service("crasher"), "production", "PromotionBlocked").get(
                "reason"
            )
            == "NotReadyUpstream"
        ),
        60,
        "production held by the crash loop upstream",
    )
    assert held
    assert (
        cluster.kubectl("-n", "production", "get", "deploy", "crasher", check=False).returncode != 0
    )

    # The quota refuses a pod beyond its count: FailedCreate.
    tight = {
        "apiVersion": "bandsy.app/v1alpha1",
        "kind": "BandsyEnvironment",
        "metadata": {"name": "tight"},
        "spec": {
            "networkPolicy": {"dnsTo": {"cidr": "10.99.0.1/32"}},
            "quota": {"pods": "1", "requests.cpu": "2", "requests.memory": "2Gi"},
            "defaults": {"requests": {"cpu": "50m", "memory": "32Mi"}},
            "deletionPolicy": "Delete",
        },
    }
    many = {
        **crash,
        "metadata": {"name": "crowd"},
        "spec": {
            **crash["spec"],
            "config": {},
            "replicas": 2,
            "environments": {"tight": {"image": {"tag": "develop-4b5c6d7"}}},
        },
    }
    # The environment, and its quota counting, first: a quota refuses only what is created
    # after it took effect (pods created before it would run, 2 beyond its limit of 1).
    cluster.kubectl("apply", "--server-side", "-f", "-", input=dump_all([tight]))

    def quota_counts() -> bool:
        found = cluster.kubectl("-n", "tight", "get", "resourcequota", "bandsy-quota", check=False)
        if found.returncode != 0:
            return False
        quota = cluster.json("-n", "tight", "get", "resourcequota", "bandsy-quota")
        return bool((quota.get("status") or {}).get("hard"))

    eventually(quota_counts, 60, "the quota of tight in effect")
    cluster.kubectl("apply", "--server-side", "-f", "-", input=dump_all([many]))
    refused = eventually(lambda: reason("crowd", "tight", "FailedCreate"), 120, "FailedCreate")
    assert "exceeded quota" in refused["message"], refused
    cluster.kubectl("delete", "bsvc", "crasher", "puller", "crowd", "--wait=true", "--timeout=120s")
    cluster.kubectl("delete", "benv", "tight", "--wait=true", "--timeout=120s")


def set_tag(cluster: Cluster, service: str, env: str, tag: str) -> None:
    patch = {"spec": {"environments": {env: {"image": {"tag": tag}}}}}
    cluster.kubectl("patch", "bsvc", service, "--type=merge", "-p", json.dumps(patch))


def rolled_out(cluster: Cluster, env: str, service: str, tag: str) -> bool:
    """The Deployment runs ``tag`` on all its replicas, Ready."""
    deployment = cluster.json("-n", env, "get", "deploy", service)
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    status = deployment["status"]
    return bool(
        image.endswith(f":{tag}")
        and status.get("observedGeneration") == deployment["metadata"]["generation"]
        and status.get("updatedReplicas")
        == status.get("readyReplicas")
        == status.get("replicas")
        == deployment["spec"]["replicas"]
    )


def test_a_tag_edit_rolls_out_new_pods(cluster: Cluster, pytestconfig: pytest.Config) -> None:
    """Edit → the new pods Ready, measured through the operator and the real kubelet."""
    took = []
    tags = ["develop-4b5c6d7", "develop-3f2a9c1"] * 3
    for tag in tags:
        started = time.monotonic()
        set_tag(cluster, "web", "develop", tag)
        eventually(
            lambda tag=tag: rolled_out(cluster, "develop", "web", tag),
            60,
            f"web rolled out {tag}",
            interval=0.05,
        )
        took.append(time.monotonic() - started)
    took.sort()
    p95 = took[min(len(took) - 1, round(0.95 * (len(took) - 1)))]
    line = (
        f"tag edit → new pods Ready on the node ({len(took)} edits): "
        f"p50 {statistics.median(took):.2f} s, p95 {p95:.2f} s, max {took[-1]:.2f} s"
    )
    print(line)
    pytestconfig.get_terminal_writer().line(f"[node] {line}")
    assert ask(cluster, "develop", "web", "/env?key=BANDSY_SERVICE") == "web"


# -- migrations (SPEC §11) ------------------------------------------------------------------------


def image_of(cluster: Cluster, tag: str) -> str:
    return f"{cluster.variables['BANDSY_TEST_IMAGE']}:{tag}"


def migration_job(cluster: Cluster, env: str, tag: str) -> dict[str, Any] | None:
    name = naming.migration_job("api", image_of(cluster, tag))
    found = cluster.kubectl("-n", env, "get", "job", name, "-o", "json", check=False)
    return json.loads(found.stdout) if found.returncode == 0 else None


def env_status(cluster: Cluster, service: str, env: str) -> dict[str, Any]:
    return dict(cluster.service(service)["status"]["environments"][env])


def migrated_rows(cluster: Cluster, database: str) -> list[tuple[str, str]]:
    """What ``testapp migrate`` recorded in ``database``: its migrations and the demo's row."""

    async def query() -> list[tuple[str, str]]:
        args = {**postgres_admin_args(cluster.variables), "database": database}
        conn = await asyncpg.connect(**args, ssl="require")
        try:
            rows = await conn.fetch(
                "select m.name, d.note from testapp_migrations m, testapp_demo d order by m.name"
            )
        finally:
            await conn.close()
        return [(row["name"], row["note"]) for row in rows]

    return asyncio.run(query())


def migrate_with(cluster: Cluster, args: list[str]) -> None:
    patch = {"spec": {"migrations": {"args": args}}}
    cluster.kubectl("patch", "bsvc", "api", "--type=merge", "-p", json.dumps(patch))


def test_a_migration_runs_before_its_rollout_and_once_per_environment(cluster: Cluster) -> None:
    # preprod runs a release that started before the service had migrations (see the test of
    # NotMigratedUpstream below).
    set_tag(cluster, "api", "preprod", "release-1.7.3")
    eventually(lambda: rolled_out(cluster, "preprod", "api", "release-1.7.3"), 120, "preprod")
    migrate_with(cluster, ["migrate"])
    set_tag(cluster, "api", "develop", "develop-4b5c6d7")
    eventually(lambda: rolled_out(cluster, "develop", "api", "develop-4b5c6d7"), 120, "rollout")

    job = migration_job(cluster, "develop", "develop-4b5c6d7")
    assert job is not None
    assert job["status"].get("succeeded") == 1, job
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == image_of(
        cluster, "develop-4b5c6d7"
    )
    # The Deployment changed only after the migration succeeded.
    finished = job["status"]["completionTime"]
    replicasets = cluster.json("-n", "develop", "get", "rs", "-l", "bandsy.app/service=api")
    new = [
        rs
        for rs in replicasets["items"]
        if rs["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":develop-4b5c6d7")
    ]
    assert new
    assert all(rs["metadata"]["creationTimestamp"] >= finished for rs in new)
    assert migrated_rows(cluster, "api-develop") == [
        ("0001_testapp_demo.sql", "created by testapp migrate")
    ]
    status = env_status(cluster, "api", "develop")
    record = status["migrations"][0]
    assert record["image"] == image_of(cluster, "develop-4b5c6d7")
    assert record["state"] == "Succeeded"
    assert record["job"] == job["metadata"]["name"]
    assert status["history"][0]["migrationSeconds"] == record["durationSeconds"] >= 0

    # Once per image and environment: after an operator restart, a rollback (the older tag
    # never migrated here: it does now) and forward again, without a second migration.
    cluster.kubectl("-n", "bandsy-system", "rollout", "restart", "deploy/bandsy-operator")
    cluster.kubectl(
        "-n", "bandsy-system", "rollout", "status", "deploy/bandsy-operator", "--timeout=120s"
    )
    set_tag(cluster, "api", "develop", "develop-3f2a9c1")
    eventually(lambda: rolled_out(cluster, "develop", "api", "develop-3f2a9c1"), 120, "rollback")
    # The newer success made the older Job redundant: it is gone, its record stays.
    assert migration_job(cluster, "develop", "develop-4b5c6d7") is None
    set_tag(cluster, "api", "develop", "develop-4b5c6d7")
    eventually(lambda: rolled_out(cluster, "develop", "api", "develop-4b5c6d7"), 120, "forward")
    assert migration_job(cluster, "develop", "develop-4b5c6d7") is None  # not run again
    images = [m["image"] for m in env_status(cluster, "api", "develop")["migrations"]]
    assert images == [image_of(cluster, "develop-3f2a9c1"), image_of(cluster, "develop-4b5c6d7")]


def test_a_failed_migration_keeps_the_old_pods_serving(cluster: Cluster) -> None:
    migrate_with(cluster, ["migrate", "--no-such-flag"])
    set_tag(cluster, "api", "develop", "develop-5d6e7f8")

    def failed() -> dict[str, Any]:
        blocked = environment_condition(cluster.service("api"), "develop", "PromotionBlocked")
        assert blocked.get("reason") == "MigrationFailed", blocked
        return blocked

    blocked = eventually(failed, 120, "MigrationFailed")
    assert "usage: testapp" in blocked["message"], blocked  # the end of the Job's log
    assert "develop-4b5c6d7 keeps running" in blocked["message"]
    password = base64.b64decode(
        cluster.json("-n", "develop", "get", "secret", "api-postgres")["data"]["PGPASSWORD"]
    ).decode()
    assert password not in json.dumps(cluster.service("api"))
    # The old pods serve on, Ready.
    assert rolled_out(cluster, "develop", "api", "develop-4b5c6d7")
    ready = environment_condition(cluster.service("api"), "develop", "Ready")
    assert ready["status"] == "True", ready

    # Fixed, and run again by deleting the failed Job: the rollout goes on.
    migrate_with(cluster, ["migrate"])
    failed_job = migration_job(cluster, "develop", "develop-5d6e7f8")
    assert failed_job is not None
    cluster.kubectl("-n", "develop", "delete", "job", failed_job["metadata"]["name"])
    eventually(lambda: rolled_out(cluster, "develop", "api", "develop-5d6e7f8"), 120, "retried")


def kill_operator(cluster: Cluster) -> None:
    """SIGKILL, as the kubelet does for a pod deleted without grace."""
    cluster.kubectl(
        "-n",
        "bandsy-system",
        "delete",
        "pod",
        "-l",
        OPERATOR_PODS,
        "--grace-period=0",
        "--force",
    )


def test_an_operator_killed_during_a_migration_neither_repeats_nor_loses_it(
    cluster: Cluster,
) -> None:
    set_tag(cluster, "api", "develop", "develop-6e7f8a9")
    started = eventually(
        lambda: migration_job(cluster, "develop", "develop-6e7f8a9"), 60, "the Job", interval=0.05
    )
    kill_operator(cluster)
    eventually(lambda: rolled_out(cluster, "develop", "api", "develop-6e7f8a9"), 180, "rollout")
    finished = migration_job(cluster, "develop", "develop-6e7f8a9")
    assert finished is not None
    assert finished["metadata"]["uid"] == started["metadata"]["uid"]  # the same Job, once
    assert finished["status"].get("succeeded") == 1
    assert "failed" not in finished["status"]
    records = env_status(cluster, "api", "develop")["migrations"]
    assert [r["image"] for r in records].count(image_of(cluster, "develop-6e7f8a9")) == 1
    assert records[0]["state"] == "Succeeded"

    # Killed after the rollout and before its status write: the records are lost (removed here
    # while no operator runs, so none writes them back). The operator, back, finds the migration
    # in its Job, without running it again.
    operator = ("-n", "bandsy-system", "deploy/bandsy-operator")
    cluster.kubectl("scale", *operator, "--replicas=0")
    cluster.kubectl(
        "-n",
        "bandsy-system",
        "wait",
        "--for=delete",
        "pod",
        "-l",
        OPERATOR_PODS,
        "--timeout=60s",
    )
    cluster.kubectl(
        "patch",
        "bsvc",
        "api",
        "--subresource=status",
        "--type=json",
        "-p",
        '[{"op": "remove", "path": "/status/environments/develop/migrations"}]',
    )
    assert "migrations" not in env_status(cluster, "api", "develop")
    cluster.kubectl("scale", *operator, "--replicas=2")

    def recorded() -> bool:
        found = env_status(cluster, "api", "develop").get("migrations") or []
        return [r["image"] for r in found] == [image_of(cluster, "develop-6e7f8a9")]

    eventually(recorded, 120, "the migration recorded again from its Job")
    again = migration_job(cluster, "develop", "develop-6e7f8a9")
    assert again is not None
    assert again["metadata"]["uid"] == started["metadata"]["uid"]


def test_production_takes_only_a_tag_that_migrated_upstream(cluster: Cluster) -> None:
    # release-1.7.3 runs Ready in preprod, but rolled out there before migrations existed.
    set_tag(cluster, "api", "production", "release-1.7.3")

    def held() -> dict[str, Any]:
        blocked = environment_condition(cluster.service("api"), "production", "PromotionBlocked")
        assert blocked.get("reason") == "NotMigratedUpstream", blocked
        return blocked

    eventually(held, 60, "NotMigratedUpstream")
    assert rolled_out(cluster, "production", "api", "release-1.7.2")
    # A release that migrated in preprod migrates in production, then rolls out there.
    set_tag(cluster, "api", "preprod", "release-1.7.4")
    set_tag(cluster, "api", "production", "release-1.7.4")
    eventually(lambda: rolled_out(cluster, "production", "api", "release-1.7.4"), 180, "production")
    for env in ("preprod", "production"):
        record = env_status(cluster, "api", env)["migrations"][0]
        assert record["image"] == image_of(cluster, "release-1.7.4")
        assert record["state"] == "Succeeded"
    assert migrated_rows(cluster, "api-production") == [
        ("0001_testapp_demo.sql", "created by testapp migrate")
    ]


# -- backups (SPEC §11) ---------------------------------------------------------------------------

BUCKET = "bandsy-node-e2e"


def s3(cluster: Cluster) -> Any:
    """The harness's S3 API, as the host reaches it."""
    return boto3.client(
        "s3",
        endpoint_url=cluster.variables["BANDSY_S3_ENDPOINT"],
        region_name=cluster.variables["BANDSY_S3_REGION"],
        aws_access_key_id=cluster.variables["BANDSY_S3_ACCESS_KEY_ID"],
        aws_secret_access_key=cluster.variables["BANDSY_S3_SECRET_ACCESS_KEY"],
        verify=cluster.variables["BANDSY_S3_CA_FILE"],
    )


def bucket_keys(cluster: Cluster) -> list[str]:
    listed = s3(cluster).list_objects_v2(Bucket=BUCKET, Prefix="node-e2e/develop/api/")
    return sorted(obj["Key"] for obj in listed.get("Contents") or [])


def back_up_develop(cluster: Cluster, endpoint: str, env: str = "develop") -> None:
    """develop (or ``env``) backs up its service databases to the harness's bucket through
    ``endpoint``."""
    backups = {
        "schedule": "0 3 * * *",
        "retention": {"count": 3},
        "storage": {
            "s3": {
                "endpoint": endpoint,
                "bucket": BUCKET,
                "prefix": "node-e2e",
                "region": cluster.variables["BANDSY_S3_REGION"],
                "credentialsSecretRef": {"namespace": "default", "name": "node-e2e-s3"},
                "caSecretRef": {"namespace": "default", "name": "node-e2e-s3"},
                "egressTo": {"cidr": f"{urlsplit(endpoint).hostname}/32"},
            }
        },
    }
    patch = {"spec": {"backups": backups}}
    cluster.kubectl("patch", "benv", env, "--type=merge", "-p", json.dumps(patch))

    def cronjob_uses_it() -> bool:
        found = cluster.kubectl("-n", env, "get", "cronjob", "api-backup", check=False)
        if found.returncode != 0:
            return False
        cronjob = cluster.json("-n", env, "get", "cronjob", "api-backup")
        container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        values = {e["name"]: e.get("value") for e in container["env"]}
        return values.get("BANDSY_BACKUP_ENDPOINT") == endpoint

    eventually(cronjob_uses_it, 60, f"the backup CronJob using {endpoint}")


def run_backup(cluster: Cluster, name: str) -> None:
    cluster.kubectl("-n", "develop", "create", "job", "--from=cronjob/api-backup", name)


def backup_condition(cluster: Cluster) -> dict[str, Any]:
    return environment_condition(cluster.service("api"), "develop", "BackupReady")


def test_backups_are_verified_listed_and_survive_a_down_bucket(cluster: Cluster) -> None:
    keys = {
        "AWS_ACCESS_KEY_ID": cluster.variables["BANDSY_S3_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": cluster.variables["BANDSY_S3_SECRET_ACCESS_KEY"],
        "ca.crt": Path(cluster.variables["BANDSY_S3_CA_FILE"]).read_text(),
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "node-e2e-s3", "namespace": "default"},
        "stringData": keys,
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(secret))
    s3(cluster).create_bucket(Bucket=BUCKET)
    endpoint = cluster.variables["BANDSY_POD_S3_ENDPOINT"]
    back_up_develop(cluster, endpoint)

    run_backup(cluster, "api-backup-e2e-1")

    def verified(job: str) -> dict[str, Any]:
        condition = backup_condition(cluster)
        assert condition.get("reason") == "BackupVerified", condition
        backup = env_status(cluster, "api", "develop")["backup"]
        assert backup["lastVerified"]["job"] == job, backup
        return dict(backup)

    backup = eventually(lambda: verified("api-backup-e2e-1"), 180, "a verified backup")
    newest = backup["lastVerified"]
    assert newest["rows"] >= 2  # testapp's migration table and its demo row at least
    assert bucket_keys(cluster) == [
        f"node-e2e/develop/api/{newest['taken']}.dump",
        f"node-e2e/develop/api/{newest['taken']}.json",
    ]
    listed = json.loads(
        cluster.bandsyctl("backups", "api", "--env", "develop", "-o", "json").stdout
    )
    assert listed[0]["taken"] == newest["taken"]
    assert listed[0]["rows"] == str(newest["rows"])
    # The Job ran as the service's role with Secrets by reference only.
    job = cluster.json("-n", "develop", "get", "job", "api-backup-e2e-1")
    dumped = json.dumps(job)
    assert cluster.variables["BANDSY_S3_SECRET_ACCESS_KEY"] not in dumped

    # The bucket down: its port on the node's other address, where pods may connect and
    # nothing listens. BackupReady=False, retried, nothing deleted.
    before = bucket_keys(cluster)
    back_up_develop(cluster, f"https://{NODE_IP}:{urlsplit(endpoint).port}")
    run_backup(cluster, "api-backup-e2e-2")

    def failed() -> dict[str, Any]:
        condition = backup_condition(cluster)
        assert condition.get("reason") == "BackupFailed", condition
        return condition

    condition = eventually(failed, 240, "BackupFailed")
    assert newest["taken"] in condition["message"]  # the last good one is named
    attempts = cluster.json("-n", "develop", "get", "job", "api-backup-e2e-2")["status"]
    assert attempts.get("failed") == 3  # the first try and backoffLimit's two retries
    assert bucket_keys(cluster) == before
    assert env_status(cluster, "api", "develop")["backup"]["lastVerified"] == newest

    # Back up; the operator killed while a backup runs: the outcome is still taken in.
    back_up_develop(cluster, endpoint)
    run_backup(cluster, "api-backup-e2e-3")
    kill_operator(cluster)
    third = eventually(lambda: verified("api-backup-e2e-3"), 240, "the backup after a kill")
    assert third["verified"][0] == third["lastVerified"]["taken"]
    assert len(third["verified"]) == 2


# -- restore (SPEC §11) ---------------------------------------------------------------------------


def admin_execute(cluster: Cluster, database: str, sql: str) -> None:
    async def run() -> None:
        args = {**postgres_admin_args(cluster.variables), "database": database}
        conn = await asyncpg.connect(**args, ssl="require")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def demo_rows(cluster: Cluster) -> str:
    """What api's pod reads: the rows of the table its migration made."""
    return ask(cluster, "develop", "api", "/db/rows?table=testapp_demo", 9000)


def restore_record(cluster: Cluster) -> dict[str, Any]:
    return dict(env_status(cluster, "api", "develop").get("restore") or {})


def test_a_restore_brings_back_what_the_app_reads(cluster: Cluster) -> None:
    """Rows written, backed up, lost; restored by a Job on the node (the operator SIGKILLed
    while it runs); the app's new pods read the rows again; the cleanup drops the old data."""
    admin_execute(
        cluster,
        "api-develop",
        "insert into testapp_demo (note) select 'kept ' || n from generate_series(1, 99) n",
    )

    def read_back() -> bool:
        rows = demo_rows(cluster)
        return rows.isdigit() and int(rows) >= 100

    eventually(read_back, 30, "the app reads the new rows")
    kept = demo_rows(cluster)
    run_backup(cluster, "api-backup-e2e-restore")

    def verified() -> bool:
        backup = env_status(cluster, "api", "develop")["backup"]
        return bool(backup["lastVerified"]["job"] == "api-backup-e2e-restore")

    eventually(verified, 180, "the backup of the rows")
    admin_execute(cluster, "api-develop", "delete from testapp_demo")
    assert demo_rows(cluster) == "0"

    cluster.bandsyctl("restore", "api", "--env", "develop", "--from", "develop@latest", "--yes")
    eventually(lambda: restore_record(cluster).get("phase") == "Restoring", 60, "Restoring")
    kill_operator(cluster)

    def restored() -> dict[str, Any]:
        record = restore_record(cluster)
        assert record.get("phase") == "Restored", record
        return record

    record = eventually(restored, 300, "the restore swapped in")
    eventually(lambda: demo_rows(cluster) == kept, 120, f"the app reads its {kept} rows again")
    previous = record["previous"]
    assert previous == naming.previous_database("api-develop", record["id"])
    job = cluster.json("-n", "develop", "get", "job", record["job"])
    assert job["status"].get("succeeded") == 1
    assert cluster.variables["BANDSY_PG_ADMIN_PASSWORD"] not in json.dumps(job)

    done = cluster.bandsyctl(
        "restore", "api", "--env", "develop", "--cleanup", "--yes", "--wait", "120"
    )
    assert f"dropped {previous}" in done.stdout
    with pytest.raises(asyncpg.InvalidCatalogNameError):
        admin_execute(cluster, previous, "select 1")
    assert demo_rows(cluster) == kept


# -- mirror (SPEC §11) ----------------------------------------------------------------------------


def test_a_mirror_brings_production_data_to_develop_only_scrubbed(cluster: Cluster) -> None:
    """production backs up to develop's bucket; develop mirrors it with api's scrub. A Job of
    the mirror CronJob runs on the node (the operator SIGKILLed meanwhile); the app's new pods
    in develop read production's rows, and develop's database holds none of the scrubbed
    values."""
    secret = "a customer note that stays in production"
    admin_execute(
        cluster,
        "api-production",
        "insert into testapp_demo (note)"
        " select 'a customer note that stays in production' from generate_series(1, 41)",
    )
    back_up_develop(cluster, cluster.variables["BANDSY_POD_S3_ENDPOINT"], env="production")
    cluster.kubectl(
        "-n", "production", "create", "job", "--from=cronjob/api-backup", "api-backup-prod-1"
    )

    def production_backed_up() -> bool:
        backup = env_status(cluster, "api", "production").get("backup") or {}
        return bool((backup.get("lastVerified") or {}).get("job") == "api-backup-prod-1")

    eventually(production_backed_up, 240, "production's backup")
    scrub = {"spec": {"postgres": {"scrub": "update testapp_demo set note = 'scrubbed ' || id"}}}
    cluster.kubectl("patch", "bsvc", "api", "--type=merge", "-p", json.dumps(scrub))
    mirror = {"spec": {"postgres": {"mirror": {"from": "production", "schedule": "0 4 * * *"}}}}
    cluster.kubectl("patch", "benv", "develop", "--type=merge", "-p", json.dumps(mirror))

    def cronjob() -> bool:
        found = cluster.kubectl("-n", "develop", "get", "cronjob", "api-mirror", check=False)
        return found.returncode == 0

    eventually(cronjob, 60, "the mirror CronJob")
    cluster.kubectl("-n", "develop", "create", "job", "--from=cronjob/api-mirror", "api-mirror-1")
    kill_operator(cluster)

    def mirrored() -> dict[str, Any]:
        record = env_status(cluster, "api", "develop").get("mirror") or {}
        assert (record.get("lastMirrored") or {}).get("job") == "api-mirror-1", record
        return dict(record["lastMirrored"])

    done = eventually(mirrored, 300, "the mirror swapped in")
    assert done["scrubbed"] is True
    production_rows = ask(cluster, "production", "api", "/db/rows?table=testapp_demo", 9000)
    eventually(
        lambda: demo_rows(cluster) == production_rows,
        120,
        f"develop's app reads production's {production_rows} rows",
    )
    admin = postgres_admin_args(cluster.variables)
    dumped = subprocess.run(
        ["pg_dump", "--format=plain", "--dbname=api-develop"],
        env={
            **os.environ,
            "PGHOST": str(admin["host"]),
            "PGPORT": str(admin["port"]),
            "PGUSER": str(admin["user"]),
            "PGPASSWORD": str(admin["password"]),
            "PGSSLMODE": "require",
        },
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "scrubbed " in dumped
    assert secret not in dumped


# -- production readiness (SPEC §12) ------------------------------------------------------------


def evict(cluster: Cluster, namespace: str, pod: str) -> subprocess.CompletedProcess[str]:
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": pod, "namespace": namespace},
    }
    path = f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction"
    return cluster.kubectl(
        "create", "--raw", path, "-f", "-", input=json.dumps(eviction), check=False
    )


def test_the_disruption_budget_lets_one_pod_go_at_a_time(cluster: Cluster) -> None:
    """api runs two replicas in production: a drain may evict one of its pods, not both."""

    def budget_allows_one() -> bool:
        found = cluster.kubectl("-n", "production", "get", "pdb", "api", check=False)
        if found.returncode != 0:
            return False
        status = cluster.json("-n", "production", "get", "pdb", "api").get("status") or {}
        return bool(status.get("disruptionsAllowed") == 1 and status.get("currentHealthy") == 2)

    eventually(budget_allows_one, 120, "api's PodDisruptionBudget with both pods healthy")
    pods = cluster.json("-n", "production", "get", "pods", "-l", "app.kubernetes.io/name=api")
    names = sorted(p["metadata"]["name"] for p in pods["items"])
    assert len(names) == 2, names
    first = evict(cluster, "production", names[0])
    assert first.returncode == 0, first.stderr
    second = evict(cluster, "production", names[1])
    assert second.returncode != 0
    assert "disruption budget" in second.stderr, second.stderr
    eventually(budget_allows_one, 180, "api back to two healthy pods")


def test_the_autoscaler_scales_through_the_node_and_the_operator_leaves_it(
    cluster: Cluster,
) -> None:
    """api in production, autoscaled at 3 to 4: the HPA controller scales its Deployment, the
    kubelet runs the third pod, and a rollout by the operator keeps the autoscaler's count."""

    def patch(environment: dict[str, Any], config: dict[str, str] | None = None) -> None:
        spec: dict[str, Any] = {"environments": {"production": environment}}
        if config is not None:
            spec["config"] = config
        body = json.dumps({"spec": spec})
        cluster.kubectl("patch", "bsvc", "api", "--type", "merge", "-p", body)

    def deployment() -> dict[str, Any]:
        found: dict[str, Any] = cluster.json("-n", "production", "get", "deployment", "api")
        return found

    def ready_at(replicas: int, generation: int = 0) -> bool:
        live = deployment()
        status = live.get("status") or {}
        return bool(
            live["spec"].get("replicas") == replicas
            and live["metadata"]["generation"] >= generation
            and status.get("observedGeneration") == live["metadata"]["generation"]
            and status.get("updatedReplicas") == replicas
            and status.get("readyReplicas") == replicas
            and status.get("replicas") == replicas
        )

    patch({"replicas": None, "autoscaling": {"minReplicas": 3, "maxReplicas": 4}})
    eventually(lambda: ready_at(3), 180, "the autoscaler's third api pod Ready")
    hpa = cluster.json("-n", "production", "get", "hpa", "api")
    assert hpa["spec"]["minReplicas"] == 3
    generation = deployment()["metadata"]["generation"]
    patch({}, config={"ROLLOUT_MARK": str(time.time())})
    eventually(lambda: ready_at(3, generation + 1), 240, "a rollout at the autoscaler's 3")

    patch({"replicas": 2, "autoscaling": None})
    eventually(lambda: ready_at(2), 180, "api back at the operator's 2 replicas")

    def hpa_gone() -> bool:
        found = cluster.kubectl("-n", "production", "get", "hpa", "api", check=False)
        return found.returncode != 0

    eventually(hpa_gone, 60, "the HPA removed")


# -- from a laptop (issue 19) -------------------------------------------------------------------


def laptop(cluster: Cluster, *args: str) -> subprocess.Popen[str]:
    """bandsyctl as a developer runs it on their machine, with kubectl on the way."""
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "bandsyctl"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={
            **os.environ,
            "KUBECONFIG": str(cluster.env.kube.kubeconfig),
            "BANDSY_KUBECTL": cluster.kubectl.binary,
        },
        preexec_fn=as_in_a_terminal,
    )


def as_in_a_terminal() -> None:
    """Ctrl-C's signal at its default, as a terminal's foreground job has it. A suite started
    in the background by a shell without job control (`make test &` in a script) inherits
    SIGINT ignored, and Python keeps an ignored SIGINT ignored: the session would never see
    the test's Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ended(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    """Ends a session as Ctrl-C does; its exit code and what it printed."""
    process.send_signal(signal.SIGINT)
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"bandsyctl still ran 60 s after Ctrl-C; its stderr:\n{err}")
    return process.returncode, out, err


def test_connect_forwards_to_a_real_pod(cluster: Cluster) -> None:
    session = laptop(cluster, "connect", "web", "--env", "develop")
    assert session.stdout is not None
    line = session.stdout.readline()
    found = re.search(r"http://127\.0\.0\.1:\d+", line)
    assert found, line + (session.stderr.read() if session.stderr else "")
    assert http(f"{found.group(0)}/healthz").strip() == "ok"  # the test app, through the API
    code, _, err = ended(session)
    assert code == 0, err
    refused = laptop(cluster, "connect", "web", "--env", "production")
    _, err = refused.communicate(timeout=60)
    assert refused.returncode == 1
    assert "production is protected" in err


def test_db_opens_psql_as_the_services_role_through_a_relay(cluster: Cluster) -> None:
    secret = cluster.json("-n", "develop", "get", "secret", "api-postgres")
    credentials = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    session = laptop(
        cluster,
        "db",
        "api",
        "--env",
        "develop",
        "--",
        "-tAc",
        "select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()",
    )
    out, err = session.communicate(timeout=180)
    assert session.returncode == 0, err
    # psql ran as the service's role, over TLS end to end through the relay.
    assert out.strip() == f"{credentials['PGUSER']}|t", out
    assert credentials["PGPASSWORD"] not in out + err

    def relay_gone() -> bool:
        pods = cluster.json("-n", "develop", "get", "pods", "-l", "bandsy.app/db-session-of=api")
        return not pods["items"]

    eventually(relay_gone, 60, "the relay pod deleted")

    # --print-env: libpq's variables for other tools, the password only in a private file.
    session = laptop(cluster, "db", "api", "--env", "develop", "--print-env")
    assert session.stdout is not None
    exports: dict[str, str] = {}
    while "PGPASSFILE" not in exports:
        line = session.stdout.readline()
        assert line, session.stderr.read() if session.stderr else ""
        key, _, value = line.removeprefix("export ").strip().partition("=")
        exports[key] = value.strip("'")
    assert credentials["PGPASSWORD"] not in str(exports)
    passfile = Path(exports["PGPASSFILE"])
    assert passfile.stat().st_mode & 0o777 == 0o600
    psql = subprocess.run(
        ["psql", "-tAc", "select current_database()"],
        env={k: v for k, v in os.environ.items() if not k.startswith("PG")} | exports,
        capture_output=True,
        text=True,
        check=False,
    )
    assert psql.stdout.strip() == credentials["PGDATABASE"], psql.stderr
    code, _, err = ended(session)
    assert code == 0, err
    assert not passfile.exists()
    eventually(relay_gone, 60, "the relay pod deleted after --print-env")
