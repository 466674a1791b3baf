"""Debian packages the local servers need: installed when missing and running as root."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

# command we look for -> Debian package providing it
REQUIRED = {"redis-server": "redis-server", "initdb": "postgresql"}
# `make image` (bandsy_dev.image): the Dockerfile builder (chroot isolation: no runc needed), the
# base image's bootstrapper, and buildah's uid-mapping helpers (a dependency, named to be checked).
IMAGE_TOOLS = {"buildah": "buildah", "debootstrap": "debootstrap", "newuidmap": "uidmap"}
# The node (SPEC §8.1), which only runs as root: looked up by Debian package name.
NODE_PACKAGES = (
    "runc",
    "containernetworking-plugins",  # bridge, host-local, loopback in /usr/lib/cni
    "umoci",  # builds the OCI images the node imports (no registry)
    "ipset",  # kube-router's NetworkPolicy sets
    "nftables",  # our guard table; the teardown lists and removes tables
    "iptables",  # kube-router's chains
    "busybox-static",  # the node test's image: a static busybox needs no libraries
)
POSTGRES_LIB = Path("/usr/lib/postgresql")


def postgres_bin_dir() -> Path | None:
    """The newest installed PostgreSQL server's bin directory."""
    if not POSTGRES_LIB.is_dir():
        return None
    versions = sorted(
        (p for p in POSTGRES_LIB.iterdir() if (p / "bin" / "initdb").exists()),
        key=lambda p: int(p.name) if p.name.isdigit() else 0,
    )
    return versions[-1] / "bin" if versions else None


def _present(command: str) -> bool:
    if command == "initdb":
        return postgres_bin_dir() is not None
    return shutil.which(command) is not None


def _installed(package: str) -> bool:
    status = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
    )
    return status.returncode == 0 and status.stdout.endswith(" installed")


def missing_packages(required: Mapping[str, str] = REQUIRED) -> list[str]:
    return [pkg for cmd, pkg in required.items() if not _present(cmd)]


def missing_node_packages() -> list[str]:
    return [pkg for pkg in NODE_PACKAGES if not _installed(pkg)]


def ensure_packages(required: Mapping[str, str] = REQUIRED, node: bool = False) -> None:
    missing = missing_packages(required) + (missing_node_packages() if node else [])
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(
            "missing Debian packages: "
            + " ".join(missing)
            + "\ninstall them with: sudo apt-get install -y "
            + " ".join(missing)
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        check=True,
        env=env,
    )


if __name__ == "__main__":
    # `make deps`: the node's packages too when root (a non-root run never starts the node).
    ensure_packages(node=os.geteuid() == 0)
