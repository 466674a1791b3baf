"""Debian packages the local servers need: installed when missing and running as root."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

# command we look for -> Debian package providing it
REQUIRED = {"redis-server": "redis-server", "initdb": "postgresql"}
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


def missing_packages() -> list[str]:
    return [pkg for cmd, pkg in REQUIRED.items() if not _present(cmd)]


def ensure_packages() -> None:
    missing = missing_packages()
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
