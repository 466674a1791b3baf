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


def missing_packages(required: Mapping[str, str] = REQUIRED) -> list[str]:
    return [pkg for cmd, pkg in required.items() if not _present(cmd)]


def ensure_packages(required: Mapping[str, str] = REQUIRED) -> None:
    missing = missing_packages(required)
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
    ensure_packages()
