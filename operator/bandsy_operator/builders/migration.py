"""The migration Job of one image in one environment (SPEC §11), pure."""

from __future__ import annotations

from typing import Any

from .. import naming
from ..constants import ENVIRONMENT_LABEL, MIGRATION_IMAGE_ANNOTATION, MIGRATION_LABEL
from ..models import Migrations
from ..promotion import Image
from .inputs import ServiceInputs
from .meta import Manifest, service_labels
from .pod import database_client_policy, service_container, service_pod_spec

MIGRATION_CONTAINER = "migrate"


def migration_pod_labels(service: str, environment: str) -> dict[str, str]:
    """Not the service's selector labels (its Service would route to a migration) and not
    managed-by (the operator's pod watch follows the Deployment's pods)."""
    return {ENVIRONMENT_LABEL: environment, MIGRATION_LABEL: service}


def build_migration_job(inputs: ServiceInputs, migrations: Migrations, image: Image) -> Manifest:
    """``image`` (about to roll out) run once with the service's configuration and Secrets, as
    environment variables only: no value of a Secret is in the Job."""
    container = service_container(inputs, image, MIGRATION_CONTAINER)
    if migrations.command:
        container["command"] = list(migrations.command)
    if migrations.args:
        container["args"] = list(migrations.args)
    labels = {**service_labels(inputs.name, inputs.env.name), MIGRATION_LABEL: inputs.name}
    meta = inputs.meta(
        naming.migration_job(inputs.name, str(image)),
        annotations={MIGRATION_IMAGE_ANNOTATION: str(image)},
    )
    meta["labels"] = labels
    spec: dict[str, Any] = {
        "backoffLimit": migrations.backoff_limit,
        "activeDeadlineSeconds": migrations.timeout_seconds,
        "template": {
            "metadata": {"labels": migration_pod_labels(inputs.name, inputs.env.name)},
            "spec": {
                **service_pod_spec(inputs),
                "restartPolicy": "Never",
                "containers": [container],
            },
        },
    }
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": spec}


def build_migration_network_policy(inputs: ServiceInputs) -> Manifest | None:
    if inputs.service.spec.migrations is None:
        return None
    return database_client_policy(
        inputs,
        naming.migration_policy(inputs.name),
        {ENVIRONMENT_LABEL: inputs.env.name, MIGRATION_LABEL: inputs.name},
    )
