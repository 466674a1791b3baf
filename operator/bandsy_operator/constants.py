"""API group, labels, annotations and other names shared by every module."""

from __future__ import annotations

from typing import Final

GROUP: Final = "bandsy.app"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
ENVIRONMENT_KIND: Final = "BandsyEnvironment"
SERVICE_KIND: Final = "BandsyService"
ENVIRONMENT_PLURAL: Final = "bandsyenvironments"
SERVICE_PLURAL: Final = "bandsyservices"

FIELD_MANAGER: Final = "bandsy-operator"
# Applies once, with the live value, a field we stop stating for another controller to own.
HANDOVER_FIELD_MANAGER: Final = "bandsy-operator-handover"

# The Prometheus Operator's API (SPEC §12): used only while the cluster serves its CRDs.
MONITORING_GROUP: Final = "monitoring.coreos.com"
MONITORING_API_VERSION: Final = f"{MONITORING_GROUP}/v1"
SERVICE_MONITOR_KIND: Final = "ServiceMonitor"
SERVICE_MONITOR_PLURAL: Final = "servicemonitors"
PROMETHEUS_RULE_KIND: Final = "PrometheusRule"
PROMETHEUS_RULE_PLURAL: Final = "prometheusrules"
# Exposure (SPEC §12): Gateway API routes, and cert-manager Certificates for their hosts; each
# used only while the cluster serves its CRDs.
GATEWAY_GROUP: Final = "gateway.networking.k8s.io"
GATEWAY_API_VERSION: Final = f"{GATEWAY_GROUP}/v1"
GATEWAY_KIND: Final = "Gateway"
GATEWAY_PLURAL: Final = "gateways"
HTTP_ROUTE_KIND: Final = "HTTPRoute"
HTTP_ROUTE_PLURAL: Final = "httproutes"
CERT_MANAGER_GROUP: Final = "cert-manager.io"
CERT_MANAGER_API_VERSION: Final = f"{CERT_MANAGER_GROUP}/v1"
CERTIFICATE_KIND: Final = "Certificate"
CERTIFICATE_PLURAL: Final = "certificates"
# Not a kind the API server knows: an inventory entry for a listener the operator added to a
# shared Gateway (namespace: the Gateway's; name: ``<gateway>/<listener>``). Pruning it takes
# the listener off the Gateway, which is not ours to delete.
GATEWAY_LISTENER_KIND: Final = "GatewayListener"
FINALIZER: Final = f"{GROUP}/finalizer"

# Labels on everything the operator creates (SPEC §4).
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
NAME_LABEL: Final = "app.kubernetes.io/name"
ENVIRONMENT_LABEL: Final = f"{GROUP}/environment"
SERVICE_LABEL: Final = f"{GROUP}/service"
EXTERNAL_LABEL: Final = f"{GROUP}/external"
# On a migration Job and its pods: the service it migrates. The pods carry neither the service's
# selector labels (its Service must not route to them) nor managed-by (the pod watch is for the
# Deployment's pods); their own NetworkPolicy selects them by this label.
MIGRATION_LABEL: Final = f"{GROUP}/migration-of"
# A `bandsyctl db` relay pod of a service (its NetworkPolicy reaches the service's databases).
DB_SESSION_LABEL: Final = f"{GROUP}/db-session-of"
# On a backup CronJob, its Jobs and their pods: the service whose database it backs up (SPEC §11).
BACKUP_LABEL: Final = f"{GROUP}/backup-of"
# On a restore Job: the service whose database it restores (its pods carry the backup pods'
# labels, whose NetworkPolicy lets them reach the database and the bucket).
RESTORE_LABEL: Final = f"{GROUP}/restore-of"
# On a mirror CronJob and its Jobs: the service whose database it refills (SPEC §11).
MIRROR_LABEL: Final = f"{GROUP}/mirror-of"
# Set by the Job controller on a Job's pods.
JOB_NAME_LABEL: Final = "batch.kubernetes.io/job-name"
PSA_ENFORCE_LABEL: Final = "pod-security.kubernetes.io/enforce"
NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"
# Written by the deployment controller: on each ReplicaSet and its pods (the template's hash), and
# the revision on a Deployment and on its ReplicaSet of that revision (its current one).
POD_TEMPLATE_HASH_LABEL: Final = "pod-template-hash"
REVISION_ANNOTATION: Final = "deployment.kubernetes.io/revision"

# Annotations.
CONFIG_HASH_ANNOTATION: Final = f"{GROUP}/config-hash"
APPLIED_HASH_ANNOTATION: Final = f"{GROUP}/applied-hash"
CHANGE_CAUSE_ANNOTATION: Final = f"{GROUP}/change-cause"
# On a migration Job: the image it migrates (its name has a hash of it).
MIGRATION_IMAGE_ANNOTATION: Final = f"{GROUP}/migration-image"
ROTATE_CREDENTIALS_ANNOTATION: Final = f"{GROUP}/rotate-credentials"
SKIP_GATES_ANNOTATION: Final = f"{GROUP}/skip-gates"
# Stamped by the API server (deploy/policies/promoted-by.yaml): who promoted <env> and when (the
# suffix is the environment's name), and when skip-gates was last set.
PROMOTED_BY_ANNOTATION_PREFIX: Final = f"{GROUP}/promoted-by."
PROMOTED_AT_ANNOTATION_PREFIX: Final = f"{GROUP}/promoted-at."
SKIP_GATES_AT_ANNOTATION: Final = f"{GROUP}/skip-gates-at"
# On a BandsyService: a restore (or the cleanup after one) of its database in <env> (the
# suffix), written by `bandsyctl restore` (SPEC §11). In a protected environment it is a promote.
RESTORE_ANNOTATION_PREFIX: Final = f"{GROUP}/restore."
# On a restore Job: the request it carries out.
RESTORE_REQUEST_ANNOTATION: Final = f"{GROUP}/restore-request"
# On the pod template: the restore the pods were started after (they reconnect to the new data).
RESTORED_ANNOTATION: Final = f"{GROUP}/restored"
MIRRORED_ANNOTATION: Final = f"{GROUP}/mirrored"
CLUSTER_ISSUER_ANNOTATION: Final = "cert-manager.io/cluster-issuer"
# On a BandsyEnvironment: "true" accepts a change of its database server or database template
# as a move to empty databases (the old ones are kept, their users locked).
MOVE_DATABASES_ANNOTATION: Final = f"{GROUP}/move-databases"
# The annotations of our custom resources the operator acts on. Others changing (kubectl's
# last-applied-configuration, another tool's bookkeeping) need no reconcile.
ACTIONABLE_ANNOTATIONS: Final = (
    ROTATE_CREDENTIALS_ANNOTATION,
    SKIP_GATES_ANNOTATION,
    CHANGE_CAUSE_ANNOTATION,
    MOVE_DATABASES_ANNOTATION,
)

PRODUCTION: Final = "production"
DEVELOP: Final = "develop"
