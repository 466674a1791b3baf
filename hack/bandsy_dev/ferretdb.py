"""A real MongoDB wire-protocol server on loopback: FerretDB on the harness's PostgreSQL, with its
experimental authentication (users, SCRAM) switched on and an admin user set up at start."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from .kube import REPO_ROOT
from .postgres import ADMIN_USER as POSTGRES_ADMIN
from .postgres import PostgresServer
from .procs import ManagedProcess, free_port, port_open, run_build_script

BUILD_SCRIPT = REPO_ROOT / "hack" / "ferretdb" / "build.sh"
ADMIN_USER = "bandsy-admin"
BACKEND_DATABASE = "ferretdb"


def build_ferretdb() -> Path:
    return run_build_script(BUILD_SCRIPT)


@dataclass
class FerretDBServer:
    workdir: Path
    postgres: PostgresServer
    port: int = field(default_factory=free_port)
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    process: ManagedProcess | None = None

    @property
    def log_file(self) -> Path:
        return self.workdir / "ferretdb.log"

    def start(self) -> None:
        binary = build_ferretdb()
        self.workdir.mkdir(parents=True, exist_ok=True)
        exists = self.postgres.psql("SELECT 1 FROM pg_database WHERE datname = 'ferretdb'")
        if not exists.strip():
            self.postgres.psql("CREATE DATABASE ferretdb")
        url = (
            f"postgres://{quote(POSTGRES_ADMIN)}:{quote(self.postgres.admin_password)}"
            f"@127.0.0.1:{self.postgres.port}/{BACKEND_DATABASE}?sslmode=require"
        )
        # Credentials go through the environment, not the command line that `ps` shows.
        env = {
            **os.environ,
            "FERRETDB_POSTGRESQL_URL": url,
            "FERRETDB_SETUP_PASSWORD": self.admin_password,
        }
        self.process = ManagedProcess(
            "ferretdb",
            [
                str(binary),
                "--handler=postgresql",
                f"--listen-addr=127.0.0.1:{self.port}",
                "--debug-addr=-",
                f"--state-dir={self.workdir}",
                "--telemetry=disable",
                "--test-enable-new-auth",
                "--setup-database=admin",
                f"--setup-username={ADMIN_USER}",
                "--log-level=WARN",
            ],
            self.log_file,
            env=env,
        )
        self.process.start()
        self.process.wait_until(lambda: port_open(self.port), timeout=60, what="listening")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
