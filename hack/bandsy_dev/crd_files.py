"""Other projects' CRDs the tests install and remove, from files named as those projects name
them: ``<group>_<plural>.yaml`` holds the CRD ``<plural>.<group>``."""

from __future__ import annotations

from pathlib import Path

from .operator_process import KubectlRunner


def resources(files: list[Path]) -> list[str]:
    return [f"{p.stem.partition('_')[2]}.{p.stem.partition('_')[0]}" for p in files]


def crd_names(files: list[Path]) -> list[str]:
    return [f"crd/{resource}" for resource in resources(files)]


def install(kubectl: KubectlRunner, files: list[Path]) -> None:
    """Apply the CRDs and wait until the API server serves them."""
    kubectl("apply", "--server-side", *(f"--filename={path}" for path in files))
    kubectl("wait", "--for=condition=Established", *crd_names(files), "--timeout=60s")


def remove(kubectl: KubectlRunner, files: list[Path], timeout_seconds: int = 120) -> None:
    """Delete the CRDs and every object of theirs, and wait until they are gone.

    Each kind is listed first. The API server builds a kind's storage on its first request; when
    that first request is the CRD finalizer's own list, the finalizer can fail with "storage is
    (re)initializing" and retry only minutes later (seen here: 5 min; also
    operator-framework/operator-controller#1437). Listed before, each was deleted in 3 s.
    """
    for resource in resources(files):  # one by one: a kind not installed fails its get alone
        kubectl("get", resource, "--all-namespaces", "--output=name", check=False)
    kubectl(
        "delete",
        *crd_names(files),
        "--ignore-not-found",
        "--wait=true",
        f"--timeout={timeout_seconds}s",
    )
