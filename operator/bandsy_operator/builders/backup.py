"""A service database's backup CronJob, restore Job and their pods' NetworkPolicy (SPEC §11),
pure.

The Jobs run the operator's own image (``python -m bandsy_operator.backup``) as the service's
own database role: its ``<svc>-postgres`` Secret is its PG* environment. The S3 keys come from
the environment's ``bandsy-backup-storage`` Secret by reference; no secret value is in the spec.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .. import naming
from ..constants import (
    BACKUP_LABEL,
    ENVIRONMENT_LABEL,
    MIRROR_LABEL,
    RESTORE_LABEL,
    RESTORE_REQUEST_ANNOTATION,
)
from ..models import Backups
from ..restores import LATEST, RestoreRequest
from .environment import egress_peer
from .inputs import MirrorPlan, ServiceInputs
from .meta import Manifest, service_labels
from .pod import database_egress, restricted_pod_spec

BACKUP_CONTAINER = "backup"
WORK_DIR = "/work"
CA_DIR = "/etc/bandsy/backup-ca"
CA_KEY = "ca.crt"
ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"  # noqa: S105 (a key name)
# A backup that takes longer fails; the next scheduled run tries again.
JOB_DEADLINE_SECONDS = 3 * 3600
# Attempts beyond the first (an S3 or database outage of a minute or two is ridden out).
JOB_RETRIES = 2


def backup_pod_labels(service: str, environment: str) -> dict[str, str]:
    """Neither the service's selector labels nor managed-by (see builders.migration)."""
    return {ENVIRONMENT_LABEL: environment, BACKUP_LABEL: service}


def _endpoint_port(endpoint: str | None) -> int:
    parts = urlsplit(endpoint or "https://s3.amazonaws.com")
    return parts.port or (80 if parts.scheme == "http" else 443)


def _storage_environment(
    inputs: ServiceInputs, backups: Backups, own: dict[str, str]
) -> list[dict[str, Any]]:
    """The bucket's settings, the program's ``own`` variables, and the bucket keys by
    reference."""
    s3 = backups.storage.s3
    values = {
        "BANDSY_SERVICE": inputs.name,
        "BANDSY_ENVIRONMENT": inputs.env.name,
        "BANDSY_BACKUP_BUCKET": s3.bucket,
        "BANDSY_BACKUP_PREFIX": s3.prefix,
        "BANDSY_BACKUP_ENDPOINT": s3.endpoint or "",
        "BANDSY_BACKUP_REGION": s3.region,
        "BANDSY_BACKUP_WORK_DIR": WORK_DIR,
        **own,
    }
    if s3.ca_secret_ref is not None:
        values["AWS_CA_BUNDLE"] = f"{CA_DIR}/{CA_KEY}"
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in values.items()]
    env += [
        {
            "name": key,
            "valueFrom": {"secretKeyRef": {"name": naming.BACKUP_STORAGE_SECRET, "key": key}},
        }
        for key in (ACCESS_KEY_ID, SECRET_ACCESS_KEY)
    ]
    return env


def _job_spec(
    inputs: ServiceInputs, backups: Backups, image: str, args: list[str], own: dict[str, str]
) -> dict[str, Any]:
    """A Job of the operator's image running ``python -m bandsy_operator.backup *args`` as the
    service's own database role: its ``<svc>-postgres`` Secret is its PG* environment (``own``
    overrides, PGDATABASE say). Its pods are the backup pods of the NetworkPolicy below."""
    volumes: list[dict[str, Any]] = [{"name": "work", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "work", "mountPath": WORK_DIR}]
    if backups.storage.s3.ca_secret_ref is not None:
        volumes.append(
            {
                "name": "backup-ca",
                "secret": {
                    "secretName": naming.BACKUP_STORAGE_SECRET,
                    "items": [{"key": CA_KEY, "path": CA_KEY}],
                },
            }
        )
        mounts.append({"name": "backup-ca", "mountPath": CA_DIR, "readOnly": True})
    container = {
        "name": BACKUP_CONTAINER,
        "image": image,
        "command": ["python", "-m", "bandsy_operator.backup", *args],
        "env": _storage_environment(inputs, backups, own),
        "envFrom": [{"secretRef": {"name": naming.backend_secret(inputs.name, "postgres")}}],
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    return {
        "backoffLimit": JOB_RETRIES,
        "activeDeadlineSeconds": JOB_DEADLINE_SECONDS,
        "template": {
            "metadata": {"labels": backup_pod_labels(inputs.name, inputs.env.name)},
            "spec": {
                **restricted_pod_spec(),
                "restartPolicy": "Never",
                "containers": [container],
                "volumes": volumes,
            },
        },
    }


def _cronjob(
    inputs: ServiceInputs, name: str, label: str, schedule: str, job_spec: dict[str, Any]
) -> Manifest:
    labels = {**service_labels(inputs.name, inputs.env.name), label: inputs.name}
    meta = inputs.meta(name)
    meta["labels"] = labels
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": meta,
        "spec": {
            "schedule": schedule,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            # managed-by on the Jobs: the operator's Job watch reads their outcome.
            "jobTemplate": {"metadata": {"labels": labels}, "spec": job_spec},
        },
    }


def build_backup_cronjob(
    inputs: ServiceInputs, backups: Backups, image: str, scratch: str
) -> Manifest:
    """``image``: the operator's own (it has pg_dump and the backup program)."""
    own = {
        "BANDSY_BACKUP_SCRATCH_DATABASE": scratch,
        "BANDSY_BACKUP_RETENTION_COUNT": str(backups.retention.count),
        "BANDSY_BACKUP_RETENTION_DAYS": str(backups.retention.days or ""),
    }
    job_spec = _job_spec(inputs, backups, image, [], own)
    name = naming.backup_cronjob(inputs.name)
    return _cronjob(inputs, name, BACKUP_LABEL, backups.schedule, job_spec)


def build_mirror_cronjob(inputs: ServiceInputs, backups: Backups, plan: MirrorPlan) -> Manifest:
    """SPEC §11: the source's latest verified backup into the mirror copy, scrubbed; the
    operator swaps it in when the Job succeeded."""
    own = {
        "PGDATABASE": plan.copy_database,
        "BANDSY_RESTORE_SOURCE": plan.source,
        "BANDSY_RESTORE_BACKUP": LATEST,
        "BANDSY_MIRROR_SCRUB": plan.scrub,
    }
    job_spec = _job_spec(inputs, backups, plan.image, ["mirror"], own)
    name = naming.mirror_cronjob(inputs.name)
    return _cronjob(inputs, name, MIRROR_LABEL, plan.schedule, job_spec)


def build_restore_job(
    inputs: ServiceInputs, backups: Backups, image: str, request: RestoreRequest, target: str
) -> Manifest:
    """One restore (SPEC §11): ``request``'s backup into the empty database ``target``."""
    own = {
        "PGDATABASE": target,
        "BANDSY_RESTORE_SOURCE": request.source,
        "BANDSY_RESTORE_BACKUP": request.backup,
    }
    meta = inputs.meta(naming.restore_job(inputs.name, request.id))
    meta["labels"] = {**service_labels(inputs.name, inputs.env.name), RESTORE_LABEL: inputs.name}
    meta["annotations"] = {RESTORE_REQUEST_ANNOTATION: request.id}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": _job_spec(inputs, backups, image, ["restore"], own),
    }


def build_backup_network_policy(inputs: ServiceInputs, backups: Backups) -> Manifest:
    """Backup pods reach the service's databases and the bucket; nothing reaches them."""
    egress = database_egress(inputs)
    s3 = backups.storage.s3
    if s3.egress_to is not None:
        egress.append(
            {
                "to": [egress_peer(s3.egress_to)],
                "ports": [{"protocol": "TCP", "port": _endpoint_port(s3.endpoint)}],
            }
        )
    spec: dict[str, Any] = {
        "podSelector": {"matchLabels": backup_pod_labels(inputs.name, inputs.env.name)},
        "policyTypes": ["Ingress", "Egress"],
    }
    if egress:
        spec["egress"] = egress
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": inputs.meta(naming.backup_policy(inputs.name)),
        "spec": spec,
    }


def build_backup_objects(inputs: ServiceInputs) -> list[Manifest]:
    """The backup CronJob and its pods' policy, where the environment backs the service up, and
    the mirror CronJob where it also mirrors another environment's data."""
    backups = inputs.env.spec.backups
    if inputs.backup is None or backups is None:
        return []
    objects = [
        build_backup_cronjob(inputs, backups, inputs.backup.image, inputs.backup.scratch_database),
        build_backup_network_policy(inputs, backups),
    ]
    if inputs.mirror is not None:
        objects.append(build_mirror_cronjob(inputs, backups, inputs.mirror))
    return objects
