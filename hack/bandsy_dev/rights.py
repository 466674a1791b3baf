"""SPEC §10 on a cluster: the admission policies and roles of ``deploy/policies`` and the sample
bindings of ``deploy/samples/rights.yaml`` for the local users, installed and proven enforced.

The API server loads policies, their bindings and their parameters (BandsyEnvironments) through
informers, a moment after they are written; ``install`` returns once each policy acts.
"""

from __future__ import annotations

import json
import time
from typing import Any

from bandsy_operator.constants import FINALIZER
from bandsy_operator.manifest_yaml import dump_all

from .kube import REPO_ROOT
from .operator_process import KubectlRunner
from .users import DEVELOPER

POLICIES = REPO_ROOT / "deploy" / "policies"
FINALIZER_POLICY = POLICIES / "finalizer.yaml"
RIGHTS_SAMPLE = REPO_ROOT / "deploy" / "samples" / "rights.yaml"
PROBE = "rights-probe"  # a protected environment and a service in it, for the probes only
ENFORCED_TIMEOUT = 30.0


def install(kubectl: KubectlRunner) -> None:
    """Policies and roles (the CRDs must be installed), the sample bindings, then wait."""
    kubectl("apply", "--server-side", "--force-conflicts", "-k", str(POLICIES))
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(RIGHTS_SAMPLE))
    wait_until_enforced(kubectl)


def install_finalizer_policy(kubectl: KubectlRunner) -> None:
    """The finalizer policy alone (what a bench of the operator's writes needs of
    ``deploy/policies``), then wait until it acts."""
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(FINALIZER_POLICY))
    deadline = time.monotonic() + ENFORCED_TIMEOUT
    while not _finalizing(kubectl):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{FINALIZER_POLICY} did not act within {ENFORCED_TIMEOUT} s")
        time.sleep(0.2)


def _probe_service(
    annotations: dict[str, str] | None = None,
    environments: tuple[str, ...] = (PROBE,),
    **spec: Any,
) -> str:
    body: dict[str, Any] = {
        "apiVersion": "bandsy.app/v1alpha1",
        "kind": "BandsyService",
        "metadata": {"name": PROBE, "annotations": annotations or {}},
        "spec": {
            "image": {"repository": "example.org/probe"},
            "environments": {env: {"image": {"tag": "v1"}} for env in environments},
            **spec,
        },
    }
    return dump_all([body])


def _finalizing(kubectl: KubectlRunner) -> bool:
    """A service with a database is created with the operator's finalizer (a dry run)."""
    probe = _probe_service(environments=(), postgres={"enabled": True})
    created = kubectl(
        "create", "--dry-run=server", "-o", "json", "-f", "-", input=probe, check=False
    )
    if created.returncode != 0:
        return False
    return FINALIZER in (json.loads(created.stdout)["metadata"].get("finalizers") or [])


def _enforced(kubectl: KubectlRunner) -> bool:
    """Each policy acts on a server-side dry run: the stamp is written, a forged one refused,
    a developer's promote into the protected probe environment refused, the finalizer put on
    a service with a database."""
    create = ("create", "--dry-run=server", "-f", "-")
    stamped = kubectl(*create, "-o", "json", input=_probe_service(), check=False)
    if stamped.returncode != 0:
        return False
    annotations = json.loads(stamped.stdout)["metadata"].get("annotations") or {}
    if f"bandsy.app/promoted-by.{PROBE}" not in annotations:
        return False
    forged = _probe_service({"bandsy.app/promoted-by.elsewhere": "someone"})
    if "bandsy-promoted-by" not in kubectl(*create, input=forged, check=False).stderr:
        return False
    as_developer = [f"--as={DEVELOPER.name}", *(f"--as-group={g}" for g in DEVELOPER.groups)]
    refused = kubectl(*as_developer, *create, input=_probe_service(), check=False)
    return "bandsy-promote" in refused.stderr and _finalizing(kubectl)


def wait_until_served(kubectl: KubectlRunner, timeout: float = ENFORCED_TIMEOUT) -> None:
    """After the API server (re)starts: a mutating policy reads a custom resource's schema from
    the server's own OpenAPI, which it polls every 5 s, and until it has it every edit of that
    kind is answered 503 ("There can be a delay between when CustomResourceDefinitions are
    created and when they are available"), whoever sends it. Waits for a dry run to pass."""
    probe = _probe_service(environments=())
    deadline = time.monotonic() + timeout
    while kubectl("create", "--dry-run=server", "-f", "-", input=probe, check=False).returncode:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the API server did not admit BandsyServices within {timeout} s")
        time.sleep(0.2)


def wait_until_enforced(kubectl: KubectlRunner, timeout: float = ENFORCED_TIMEOUT) -> None:
    environment = {
        "apiVersion": "bandsy.app/v1alpha1",
        "kind": "BandsyEnvironment",
        "metadata": {"name": PROBE},
        "spec": {"protected": True},
    }
    kubectl.apply(environment)
    try:
        deadline = time.monotonic() + timeout
        while not _enforced(kubectl):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the policies of {POLICIES} did not act within {timeout} s")
            time.sleep(0.2)
    finally:
        kubectl("delete", "benv", PROBE, "--wait=false", "--ignore-not-found")
