"""What a deployment controller and a kubelet write about a Deployment's pods, for tests: the
local control plane runs neither (no kubelet, no deployment or ReplicaSet controller), so tests
make the ReplicaSets and pods themselves and report their containers' states.

The shapes follow the real ones: a ReplicaSet ``<deployment>-<pod-template-hash>`` owned by its
Deployment and carrying its revision, pods ``<replicaset>-<suffix>`` made from its template and
owned by it, ``status.containerStatuses[].state`` as a kubelet reports it.
"""

from __future__ import annotations

import copy
import datetime
import uuid
from typing import Any

from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from bandsy_operator.constants import POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION
from bandsy_operator.kube import KubeApi, ObjectRef

Manifest = dict[str, Any]
CONTROLLER_MANAGER = "kube-controller-manager"


def _controller_reference(owner: Manifest) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def replicaset_of(deployment: Manifest, template_hash: str, revision: int) -> Manifest:
    """The ReplicaSet the deployment controller makes for the Deployment's current template."""
    template = copy.deepcopy(deployment["spec"]["template"])
    template["metadata"]["labels"][POD_TEMPLATE_HASH_LABEL] = template_hash
    selector = {**deployment["spec"]["selector"]["matchLabels"]}
    selector[POD_TEMPLATE_HASH_LABEL] = template_hash
    meta = deployment["metadata"]
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{meta['name']}-{template_hash}",
            "namespace": meta["namespace"],
            "labels": dict(template["metadata"]["labels"]),
            "annotations": {
                REVISION_ANNOTATION: str(revision),
                "deployment.kubernetes.io/desired-replicas": str(deployment["spec"]["replicas"]),
            },
            "ownerReferences": [_controller_reference(deployment)],
        },
        "spec": {
            "replicas": deployment["spec"]["replicas"],
            "selector": {"matchLabels": selector},
            "template": template,
        },
    }


def pod_of(replicaset: Manifest, suffix: str) -> Manifest:
    """A pod the ReplicaSet controller makes from its template."""
    template = replicaset["spec"]["template"]
    meta = replicaset["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{meta['name']}-{suffix}",
            "namespace": meta["namespace"],
            "labels": dict(template["metadata"]["labels"]),
            "annotations": dict(template["metadata"].get("annotations") or {}),
            "ownerReferences": [_controller_reference(replicaset)],
        },
        "spec": copy.deepcopy(template["spec"]),
    }


def _container(pod: Manifest, **fields: Any) -> dict[str, Any]:
    container = pod["spec"]["containers"][0]
    return {
        "name": container["name"],
        "image": container["image"],
        "imageID": "",
        "restartCount": 0,
        "ready": False,
        "started": False,
        **fields,
    }


def waiting_status(pod: Manifest, reason: str, message: str, **fields: Any) -> dict[str, Any]:
    """A kubelet's report of a container that does not start (ImagePullBackOff ...)."""
    state = {"waiting": {"reason": reason, "message": message}}
    return {
        "phase": "Pending",
        "containerStatuses": [_container(pod, state=state, **fields)],
    }


def image_pull_back_off(pod: Manifest) -> dict[str, Any]:
    image = pod["spec"]["containers"][0]["image"]
    return waiting_status(pod, "ImagePullBackOff", f'Back-off pulling image "{image}"')


def crash_loop_back_off(pod: Manifest, restarts: int = 3, exit_code: int = 1) -> dict[str, Any]:
    """A container that keeps exiting, waiting for its next restart."""
    name = pod["metadata"]["name"]
    container = pod["spec"]["containers"][0]["name"]
    status = waiting_status(
        pod,
        "CrashLoopBackOff",
        f"back-off 40s restarting failed container={container} pod={name}_"
        f"{pod['metadata']['namespace']}(uid)",
        restartCount=restarts,
        lastState={
            "terminated": {
                "exitCode": exit_code,
                "reason": "Error",
                "message": "the program's own last words, which may hold anything",
                "startedAt": "2026-01-01T00:00:00Z",
                "finishedAt": "2026-01-01T00:00:01Z",
            }
        },
    )
    status["phase"] = "Running"
    return status


def running_status(pod: Manifest) -> dict[str, Any]:
    state = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
    return {
        "phase": "Running",
        "containerStatuses": [_container(pod, state=state, ready=True, started=True)],
    }


def failed_create(message: str) -> dict[str, Any]:
    """The condition a Deployment copies from its ReplicaSet when pods cannot be created."""
    return {
        "type": "ReplicaFailure",
        "status": "True",
        "reason": "FailedCreate",
        "message": message,
    }


# -- against the API server ---------------------------------------------------------------------


async def start_rollout(
    kube: KubeApi, namespace: str, name: str, template_hash: str, revision: int
) -> Manifest:
    """Play the deployment controller for the Deployment's current template: the revision on
    the Deployment, and its ReplicaSet. Returns the ReplicaSet."""
    deployment = await kube.get(ObjectRef("apps/v1", "Deployment", namespace, name))
    assert deployment is not None, f"Deployment {namespace}/{name} does not exist"
    await kube.client.patch(
        Deployment,
        name,
        {"metadata": {"annotations": {REVISION_ANNOTATION: str(revision)}}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
        field_manager=CONTROLLER_MANAGER,
    )
    return await kube.create(replicaset_of(deployment, template_hash, revision))


async def create_pod(kube: KubeApi, replicaset: Manifest, suffix: str) -> Manifest:
    return await kube.create(pod_of(replicaset, suffix))


async def report_pod(kube: KubeApi, pod: Manifest, status: dict[str, Any]) -> None:
    """Play the kubelet: write the pod's status."""
    meta = pod["metadata"]
    await kube.client.patch(
        Pod.Status,
        meta["name"],
        {"status": status},
        namespace=meta["namespace"],
        patch_type=PatchType.MERGE,
    )


async def report_deployment(kube: KubeApi, namespace: str, name: str, **status: Any) -> None:
    """Play the deployment controller: merge ``status`` into the Deployment's, at its current
    generation."""
    live = await kube.get(ObjectRef("apps/v1", "Deployment", namespace, name))
    assert live is not None, f"Deployment {namespace}/{name} does not exist"
    body = {"observedGeneration": live["metadata"]["generation"], **status}
    await kube.client.patch(
        Deployment.Status,
        name,
        {"status": body},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )


# -- Jobs (SPEC §11): there is no Job controller here either -------------------------------------


def job_pod(job: Manifest) -> Manifest:
    """A pod of ``job`` as the Job controller makes it (its template, its name label)."""
    template = job["spec"]["template"]
    name = job["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{name}-{uuid.uuid4().hex[:5]}",
            "namespace": job["metadata"]["namespace"],
            "labels": {**template["metadata"]["labels"], "batch.kubernetes.io/job-name": name},
            "ownerReferences": [_controller_reference(job)],
        },
        "spec": template["spec"],
    }


def terminated_status(pod: Manifest, exit_code: int, message: str | None) -> dict[str, Any]:
    terminated: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": "Error" if exit_code else "Completed",
    }
    if message is not None:
        terminated["message"] = message
    return {
        "phase": "Failed" if exit_code else "Succeeded",
        "containerStatuses": [_container(pod, state={"terminated": terminated}, ready=False)],
    }


async def finish_job(
    kube: KubeApi, job: Manifest, succeeded: bool, message: str | None = None
) -> None:
    """Play the Job controller and the kubelet: one pod that ran to its end (its container's
    termination message ``message``), then the Job's terminal status."""
    pod = await kube.create(job_pod(job))
    await report_pod(kube, pod, terminated_status(pod, 0 if succeeded else 1, message))
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if succeeded:
        conditions = [
            {
                "type": "SuccessCriteriaMet",
                "status": "True",
                "reason": "CompletionsReached",
                "message": "Reached expected number of succeeded pods",
                "lastProbeTime": now,
                "lastTransitionTime": now,
            },
            {
                "type": "Complete",
                "status": "True",
                "reason": "CompletionsReached",
                "message": "Reached expected number of succeeded pods",
                "lastProbeTime": now,
                "lastTransitionTime": now,
            },
        ]
        status = {
            "startTime": now,
            "completionTime": now,
            "succeeded": 1,
            "active": 0,
            "ready": 0,
            "terminating": 0,
            "uncountedTerminatedPods": {},
            "conditions": conditions,
        }
    else:
        conditions = [
            {
                "type": "FailureTarget",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
                "lastProbeTime": now,
                "lastTransitionTime": now,
            },
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
                "lastProbeTime": now,
                "lastTransitionTime": now,
            },
        ]
        status = {
            "startTime": now,
            "failed": 1,
            "active": 0,
            "ready": 0,
            "terminating": 0,
            "uncountedTerminatedPods": {},
            "conditions": conditions,
        }
    meta = job["metadata"]
    await kube.client.patch(
        Job.Status,
        meta["name"],
        {"status": status},
        namespace=meta["namespace"],
        patch_type=PatchType.MERGE,
    )
