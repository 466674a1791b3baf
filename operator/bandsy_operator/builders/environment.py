"""Objects of one environment (owner: the BandsyEnvironment): namespace, policies, quota, access."""

from __future__ import annotations

from typing import Any

from .. import naming
from ..constants import (
    ENVIRONMENT_KIND,
    EXTERNAL_LABEL,
    NAMESPACE_NAME_LABEL,
    PSA_ENFORCE_LABEL,
)
from ..models import Environment
from .meta import Manifest, environment_labels, object_meta, owner_reference, stamp_applied_hash


def namespace_selector(namespace: str) -> dict[str, Any]:
    # kubernetes.io/metadata.name is set by the API server and cannot be spoofed by users.
    return {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}


def build_namespace(env: Environment) -> Manifest:
    labels = {**environment_labels(env.name), PSA_ENFORCE_LABEL: env.spec.pod_security}
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": object_meta(env.namespace, labels, owner_reference(ENVIRONMENT_KIND, env.meta)),
    }


def _policy(env: Environment, name: str, spec: dict[str, Any]) -> Manifest:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": object_meta(
            name,
            environment_labels(env.name),
            owner_reference(ENVIRONMENT_KIND, env.meta),
            namespace=env.namespace,
        ),
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
                        "to": [{"namespaceSelector": namespace_selector(naming.DNS_NAMESPACE)}],
                        "ports": [
                            {"protocol": "UDP", "port": 53},
                            {"protocol": "TCP", "port": 53},
                        ],
                    }
                ],
            },
        ),
        _policy(
            env,
            naming.ALLOW_INGRESS_CONTROLLER_POLICY,
            {
                "podSelector": {"matchLabels": {EXTERNAL_LABEL: "true"}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": namespace_selector(
                                    env.spec.ingress.controller_namespace
                                )
                            }
                        ]
                    }
                ],
            },
        ),
    ]
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
        "metadata": object_meta(
            naming.QUOTA,
            environment_labels(env.name),
            owner_reference(ENVIRONMENT_KIND, env.meta),
            namespace=env.namespace,
        ),
        "spec": {"hard": {key: str(value) for key, value in sorted(env.spec.quota.items())}},
    }


def build_access_bindings(env: Environment) -> list[Manifest]:
    bindings = []
    for name, cluster_role, groups in (
        (naming.VIEWERS_BINDING, "view", env.spec.access.viewers),
        (naming.EDITORS_BINDING, "edit", env.spec.access.editors),
    ):
        if not groups:
            continue
        bindings.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": object_meta(
                    name,
                    environment_labels(env.name),
                    owner_reference(ENVIRONMENT_KIND, env.meta),
                    namespace=env.namespace,
                ),
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": cluster_role,
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}
                    for group in groups
                ],
            }
        )
    return bindings


def build_environment_objects(env: Environment) -> list[Manifest]:
    """Everything the environment owns, namespace first."""
    objects = [build_namespace(env), *build_network_policies(env)]
    quota = build_quota(env)
    if quota is not None:
        objects.append(quota)
    objects.extend(build_access_bindings(env))
    return [stamp_applied_hash(obj) for obj in objects]
