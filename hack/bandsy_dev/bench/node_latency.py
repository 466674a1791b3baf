"""The bench's node scenario (SPEC §9: with a real node, tag edit → new pods Ready, p95 ≤ 5 s).

On a node of its own, after the node-less scenarios (one node per host, and no CPU shared with
them): the operator as it ships (its own process, the ServiceAccount's permissions), services
running the test app in one environment, then tag edits timed from the edit to the moment the
Deployment reports every replica of the new template Ready, as the real kubelet sees it.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from .. import testapp
from ..kube import REPO_ROOT
from ..local_env import LocalEnvironment
from ..node import node_wanted
from ..node_net import NODE_IP
from ..operator_process import KubectlRunner, OperatorProcess, least_privilege_kubeconfig

ENVIRONMENT = "bench-node"
TAGS = ("bench-a", "bench-b")
BAR_SECONDS = 5.0


def _service(index: int, repository: str) -> dict[str, Any]:
    return {
        "apiVersion": "bandsy.app/v1alpha1",
        "kind": "BandsyService",
        "metadata": {"name": f"pods-{index:03d}"},
        "spec": {
            "image": {"repository": repository},
            "port": 8080,
            "healthCheck": {"path": "/healthz"},
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
            "environments": {ENVIRONMENT: {"image": {"tag": TAGS[0]}}},
        },
    }


def _rolled_out(kubectl: KubectlRunner, name: str, tag: str) -> bool:
    deployment = json.loads(
        kubectl("-n", ENVIRONMENT, "get", "deploy", name, "-o", "json", check=False).stdout or "{}"
    )
    if not deployment:
        return False
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    status = deployment.get("status") or {}
    replicas = deployment["spec"]["replicas"]
    return bool(
        image.endswith(f":{tag}")
        and status.get("observedGeneration") == deployment["metadata"]["generation"]
        and status.get("updatedReplicas") == replicas
        and status.get("readyReplicas") == replicas
        and status.get("replicas") == replicas
    )


def _wait(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(interval)


def measure(workdir: Path, services: int, edits: int) -> dict[str, Any]:
    """The scenario's result, or why it did not run (not root, NODE=0)."""
    if not node_wanted():
        return {"skipped": "no node here (needs root; NODE=0 keeps the bench node-less)"}
    env = LocalEnvironment(workdir / "node-servers", with_node=True)
    env.start()
    operator: OperatorProcess | None = None
    try:
        assert env.node is not None
        variables = env.variables()
        kubectl = KubectlRunner(variables["KUBECONFIG"])
        testapp.tag_image(env.node.import_image, TAGS)
        kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
        kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        kubeconfig = least_privilege_kubeconfig(
            kubectl, variables["KUBECONFIG"], workdir / "node-operator-kubeconfig"
        )
        operator = OperatorProcess(kubeconfig, workdir / "node-operator.log", 300.0)
        operator.start()
        environment = {
            "apiVersion": "bandsy.app/v1alpha1",
            "kind": "BandsyEnvironment",
            "metadata": {"name": ENVIRONMENT},
            "spec": {
                "networkPolicy": {"dnsTo": {"cidr": f"{NODE_IP}/32"}},
                "deletionPolicy": "Delete",
            },
        }
        bodies = [
            environment,
            *(_service(i, variables["BANDSY_TEST_IMAGE"]) for i in range(services)),
        ]
        kubectl("apply", "--server-side", "-f", "-", input="\n---\n".join(map(json.dumps, bodies)))
        names = [f"pods-{i:03d}" for i in range(services)]
        started = time.monotonic()
        _wait(lambda: all(_rolled_out(kubectl, n, TAGS[0]) for n in names), 300, "first rollout")
        first_rollout = time.monotonic() - started
        took = []
        for edit in range(edits):
            name, tag = names[edit % services], TAGS[(edit // services + 1) % 2]
            patch = {"spec": {"environments": {ENVIRONMENT: {"image": {"tag": tag}}}}}
            started = time.monotonic()
            kubectl("patch", "bsvc", name, "--type=merge", "-p", json.dumps(patch))
            _wait(partial(_rolled_out, kubectl, name, tag), 120, f"{name} on {tag}")
            took.append(time.monotonic() - started)
    finally:
        if operator is not None:
            operator.stop()
        env.stop()
    took.sort()
    p95 = took[min(len(took) - 1, round(0.95 * (len(took) - 1)))]
    return {
        "services": services,
        "edits": edits,
        "first_rollout_seconds": round(first_rollout, 2),
        "p50_seconds": round(statistics.median(took), 3),
        "p95_seconds": round(p95, 3),
        "max_seconds": round(took[-1], 3),
        "bar": f"p95 <= {BAR_SECONDS:g} s",
        "passed": p95 <= BAR_SECONDS,
    }
