"""The one place tests play kubelet + deployment controller (there is no kubelet here).

``make_deployment_ready`` writes the status a real deployment controller would write once every
pod of the current template is running and ready.
"""

from __future__ import annotations

from typing import Any

from lightkube.resources.apps_v1 import Deployment
from lightkube.types import PatchType

from bandsy_operator.kube import KubeApi, ObjectRef


async def make_deployment_ready(api: KubeApi, namespace: str, name: str) -> dict[str, Any]:
    live = await api.get(ObjectRef("apps/v1", "Deployment", namespace, name))
    assert live is not None, f"Deployment {namespace}/{name} does not exist"
    replicas = int(live["spec"].get("replicas", 1))
    status = {
        "observedGeneration": live["metadata"]["generation"],
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "conditions": [
            {
                "type": "Available",
                "status": "True",
                "reason": "MinimumReplicasAvailable",
                "message": "Deployment has minimum availability.",
            }
        ],
    }
    await api.client.patch(
        Deployment.Status,
        name,
        {"status": status},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )
    return status
