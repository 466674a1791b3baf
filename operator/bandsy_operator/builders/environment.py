"""Objects of one environment (owner: the BandsyEnvironment): namespace, policies, quota, container
defaults, access."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from .. import naming
from ..constants import (
    ENVIRONMENT_KIND,
    EXTERNAL_LABEL,
    NAMESPACE_NAME_LABEL,
    PSA_ENFORCE_LABEL,
)
from ..models import EgressTarget, Environment
from .meta import Manifest, environment_labels, object_meta, owner_reference, stamp_applied_hash


def namespace_selector(namespace: str) -> dict[str, Any]:
    # kubernetes.io/metadata.name is set by the API server and cannot be spoofed by users.
    return {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}


def egress_peer(target: EgressTarget) -> dict[str, Any]:
    """A NetworkPolicy peer for a declared destination: pods of a namespace, or addresses."""
    if target.cidr is not None:
        return {"ipBlock": {"cidr": target.cidr}}
    peer: dict[str, Any] = {"namespaceSelector": namespace_selector(target.namespace or "")}
    if target.pod_selector:
        peer["podSelector"] = {"matchLabels": dict(sorted(target.pod_selector.items()))}
    return peer


def build_namespace(env: Environment) -> Manifest:
    labels = {**environment_labels(env.name), PSA_ENFORCE_LABEL: env.spec.pod_security}
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": object_meta(env.namespace, labels, owner_reference(ENVIRONMENT_KIND, env.meta)),
    }


def _meta(env: Environment, name: str) -> dict[str, Any]:
    """Metadata of an object the environment owns in its namespace."""
    return object_meta(
        name,
        environment_labels(env.name),
        owner_reference(ENVIRONMENT_KIND, env.meta),
        namespace=env.namespace,
    )


def _policy(env: Environment, name: str, spec: dict[str, Any]) -> Manifest:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(env, name),
        "spec": spec,
    }


def build_network_policies(env: Environment) -> list[Manifest]:
    policies = [
        _policy(
            env,
            naming.DEFAULT_DENY_POLICY,
            {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        ),
        _policy(
            env,
            naming.ALLOW_DNS_POLICY,
            {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [egress_peer(env.spec.network_policy.dns_to)],
                        "ports": [
                            {"protocol": "UDP", "port": 53},
                            {"protocol": "TCP", "port": 53},
                        ],
                    }
                ],
            },
        ),
    ]
    # External services are let in from the Gateway's namespace (its data plane's pods), or
    # the Ingress controller's; in Gateway mode without a Gateway, from nowhere.
    if (entry := env.entry_namespace) is not None:
        policies.append(
            _policy(
                env,
                naming.ALLOW_INGRESS_CONTROLLER_POLICY,
                {
                    "podSelector": {"matchLabels": {EXTERNAL_LABEL: "true"}},
                    "policyTypes": ["Ingress"],
                    "ingress": [{"from": [{"namespaceSelector": namespace_selector(entry)}]}],
                },
            )
        )
    allowed = env.spec.network_policy.allow_from_namespaces
    if allowed:
        policies.append(
            _policy(
                env,
                naming.ALLOW_FROM_NAMESPACES_POLICY,
                {
                    "podSelector": {},
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {"from": [{"namespaceSelector": namespace_selector(ns)} for ns in allowed]}
                    ],
                },
            )
        )
    return policies


def build_quota(env: Environment) -> Manifest | None:
    if not env.spec.quota:
        return None
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": _meta(env, naming.QUOTA),
        "spec": {"hard": {key: str(value) for key, value in sorted(env.spec.quota.items())}},
    }


def build_limit_range(env: Environment) -> Manifest | None:
    """Container defaults (SPEC §12): a container without requests or limits gets these, so a
    quota on them admits its pod instead of refusing it (FailedCreate)."""
    requests, limits = env.spec.defaults.requests.given(), env.spec.defaults.limits.given()
    if not requests and not limits:
        return None
    limit: dict[str, Any] = {"type": "Container"}
    if limits:
        limit["default"] = limits
    # A default limit is the default request where none is given: the API server would default
    # it so, but a field it defaults is nobody's, and would outlive the limit it came from.
    limit["defaultRequest"] = {**limits, **requests}
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": _meta(env, naming.LIMIT_RANGE),
        "spec": {"limits": [limit]},
    }


def _binding(
    env: Environment, name: str, cluster_role: str, subjects: list[dict[str, str]]
) -> Manifest:
    """A RoleBinding in the environment's namespace of a ClusterRole."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(env, name),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": cluster_role,
        },
        "subjects": subjects,
    }


def build_access_bindings(env: Environment) -> list[Manifest]:
    return [
        _binding(
            env,
            name,
            cluster_role,
            [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}
                for group in groups
            ],
        )
        for name, cluster_role, groups in (
            (naming.VIEWERS_BINDING, "view", env.spec.access.viewers),
            (naming.EDITORS_BINDING, "edit", env.spec.access.editors),
        )
        if groups
    ]


SERVICE_ACCOUNT_USER_PREFIX = "system:serviceaccount:"


def rbac_subject(username: str) -> dict[str, str]:
    """The RBAC subject of an authenticated user: a ServiceAccount by its object (what
    ``kubectl`` and audits show), anyone else (a local run) as a User."""
    namespace, _, name = username.removeprefix(SERVICE_ACCOUNT_USER_PREFIX).partition(":")
    if username.startswith(SERVICE_ACCOUNT_USER_PREFIX) and name:
        return {"kind": "ServiceAccount", "name": name, "namespace": namespace}
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": username}


def build_operator_secrets_binding(env: Environment, operator: Mapping[str, str]) -> Manifest:
    """Lets the operator (``operator``: its subject) list the environment's Secrets: a resync
    reads thousands of them with one request per namespace (SPEC §9), where a ClusterRole would
    grant every Secret of the cluster."""
    return _binding(
        env, naming.OPERATOR_SECRETS_BINDING, naming.SECRET_LISTER_CLUSTER_ROLE, [dict(operator)]
    )


def build_backup_storage_secret(env: Environment, values: Mapping[str, str]) -> Manifest:
    """The S3 keys (and CA) of the environment's backups, where its backup Jobs read them:
    copied from the Secrets ``spec.backups.storage.s3`` names, which may live elsewhere."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _meta(env, naming.BACKUP_STORAGE_SECRET),
        "data": {
            key: base64.b64encode(value.encode()).decode() for key, value in sorted(values.items())
        },
    }


def build_environment_objects(
    env: Environment,
    backup_storage: Mapping[str, str] | None = None,
    operator: Mapping[str, str] | None = None,
) -> list[Manifest]:
    """Everything the environment owns, namespace first. ``backup_storage``: the values of
    the backups' storage Secret, read by the reconciler (None: no backups, or not readable);
    ``operator``: the operator's RBAC subject (None: unknown, no binding of its own)."""
    objects = [build_namespace(env), *build_network_policies(env)]
    objects += [obj for obj in (build_quota(env), build_limit_range(env)) if obj is not None]
    objects.extend(build_access_bindings(env))
    if operator is not None:
        objects.append(build_operator_secrets_binding(env, operator))
    if env.spec.backups is not None and backup_storage is not None:
        objects.append(build_backup_storage_secret(env, backup_storage))
    return [stamp_applied_hash(obj) for obj in objects]
