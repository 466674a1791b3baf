"""A real Redis on loopback with ACLs (an ACL file, so ACL SAVE works) and an admin user."""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import redis

from .procs import ManagedProcess, free_port

ADMIN_USER = "bandsy-admin"


@dataclass
class RedisServer:
    workdir: Path
    port: int = field(default_factory=free_port)
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    # With a node: also listen on the pods' gateway (SPEC §8.1), same ACLs.
    pod_gateway: str | None = None
    process: ManagedProcess | None = None

    @property
    def acl_file(self) -> Path:
        return self.workdir / "users.acl"

    @property
    def log_file(self) -> Path:
        return self.workdir / "redis.log"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not installed: apt-get install redis-server")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.acl_file.exists():
            # The default user is off: every client must authenticate.
            self.acl_file.write_text(
                f"user default off\nuser {ADMIN_USER} on >{self.admin_password} ~* &* +@all\n"
            )
            self.acl_file.chmod(0o600)
        conf = self.workdir / "redis.conf"
        listen = ["127.0.0.1", *([self.pod_gateway] if self.pod_gateway else [])]
        conf.write_text(
            f"bind {' '.join(listen)}\n"
            f"port {self.port}\n"
            "daemonize no\n"
            f"dir {self.workdir}\n"
            f"aclfile {self.acl_file}\n"
            'save ""\n'
            "appendonly no\n"
            f"logfile {self.log_file}\n"
        )
        self.process = ManagedProcess("redis-server", [binary, str(conf)], self.log_file)
        self.process.start()
        self.process.wait_until(self._pings, timeout=30, what="answering PING")

    def admin_client(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            username=ADMIN_USER,
            password=self.admin_password,
            socket_timeout=5,
        )

    def _pings(self) -> bool:
        with self.admin_client() as client:
            return bool(client.ping())

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
