"""A real PostgreSQL on loopback: TLS on, plaintext TCP refused, SCRAM, every statement logged.

Two admins: the superuser, and a least-privileged one (``CREATEROLE CREATEDB``, not superuser)
as managed PostgreSQL services and Zalando's operator give: the operator must work with both."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bandsy_operator.backends.scram import scram_sha256_verifier

from .packages import postgres_bin_dir
from .procs import ManagedProcess, free_port, port_open
from .tls import CertificateAuthority

ADMIN_USER = "postgres"
LIMITED_ADMIN_USER = "bandsy_limited_admin"
# PostgreSQL refuses to run as root; as root we run it as the Debian package's system user.
SERVER_USER = "postgres"

HBA = """\
# Unix socket for the harness itself; TCP only with TLS, so sslmode=disable is refused.
local   all   all                 trust
hostssl all   all   127.0.0.1/32  scram-sha-256
hostssl all   all   ::1/128       scram-sha-256
"""


def pod_hba(pod_cidr: str) -> str:
    """Pods (SPEC §8.1): TLS still required."""
    return f"hostssl all   all   {pod_cidr}  scram-sha-256\n"


@dataclass
class PostgresServer:
    workdir: Path
    port: int = field(default_factory=free_port)
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    limited_admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    # With a node: also listen on the pods' gateway and admit the pod network (with TLS).
    pod_gateway: str | None = None
    pod_cidr: str | None = None
    process: ManagedProcess | None = None

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "ca.crt"

    @property
    def log_file(self) -> Path:
        return self.workdir / "postgresql.log"

    @property
    def socket_dir(self) -> Path:
        return self.workdir / "socket"

    def _run_as(self) -> str | None:
        return SERVER_USER if os.geteuid() == 0 else None

    def _bin(self, name: str) -> str:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL server not installed: apt-get install postgresql")
        return str(bin_dir / name)

    def start(self) -> None:
        if not self.data_dir.exists():
            self._init()
        self.process = ManagedProcess(
            "postgres",
            [self._bin("postgres"), "-D", str(self.data_dir)],
            self.log_file,
            user=self._run_as(),
        )
        self.process.start()
        self.process.wait_until(lambda: port_open(self.port), timeout=60, what="accepting TCP")
        self.process.wait_until(self._accepts_queries, timeout=30, what="accepting queries")
        self._set_up_limited_admin()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def _set_up_limited_admin(self) -> None:
        """Create (or, on a restart, reassert) the least-privileged admin. Its password goes in
        as a SCRAM verifier, so the statement log never holds it."""
        exists = LIMITED_ADMIN_USER in self.psql("SELECT rolname FROM pg_roles").split()
        verb = "ALTER" if exists else "CREATE"
        verifier = scram_sha256_verifier(self.limited_admin_password)
        self.psql(
            f"{verb} ROLE {LIMITED_ADMIN_USER} LOGIN NOSUPERUSER CREATEROLE CREATEDB "
            f"PASSWORD '{verifier}'"
        )

    def _accepts_queries(self) -> bool:
        return self.psql("SELECT 1").strip() == "1"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the admin over the Unix socket (harness use only)."""
        out = subprocess.run(
            [
                self._bin("psql"),
                "-X",
                "-qAt",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                ADMIN_USER,
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout

    def _init(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        pwfile = self.workdir / "pwfile"
        pwfile.write_text(self.admin_password + "\n")
        ca = CertificateAuthority.create("bandsy-postgres-ca")
        ca.write_cert(self.ca_file)
        server_cert, server_key = self.workdir / "server.crt", self.workdir / "server.key"
        # With the gateway in the certificate, pods can verify it (sslmode=verify-full).
        gateway = (self.pod_gateway,) if self.pod_gateway else ()
        ca.issue_server_cert(server_cert, server_key, "localhost", ips=gateway)
        owner = self._run_as()
        if owner is not None:
            _make_traversable(self.workdir)
            for path in (self.workdir, self.socket_dir, pwfile, server_cert, server_key):
                shutil.chown(path, owner, owner)
        subprocess.run(
            [
                self._bin("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                ADMIN_USER,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            user=owner,
        )
        pwfile.unlink()
        (self.data_dir / "pg_hba.conf").write_text(
            HBA + (pod_hba(self.pod_cidr) if self.pod_cidr else "")
        )
        listen = ",".join(["127.0.0.1", *gateway])
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# bandsy harness\n"
                f"listen_addresses = '{listen}'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "ssl = on\n"
                f"ssl_cert_file = '{server_cert}'\n"
                f"ssl_key_file = '{server_key}'\n"
                "password_encryption = 'scram-sha-256'\n"
                "max_connections = 400\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
                "log_statement = 'all'\n"
                "log_line_prefix = '%m [%p] %u@%d '\n"
                "shared_preload_libraries = 'pg_stat_statements'\n"
            )
        if owner is not None:
            for path in (self.data_dir / "pg_hba.conf", self.data_dir / "postgresql.conf"):
                shutil.chown(path, owner, owner)


def _make_traversable(path: Path) -> None:
    """Let the server's system user reach its directory through our (maybe 0700) parents."""
    for parent in [path, *path.parents]:
        if parent == Path("/"):
            break
        mode = parent.stat().st_mode
        if parent.stat().st_uid == os.geteuid() and not mode & 0o001:
            parent.chmod(mode | 0o011)
