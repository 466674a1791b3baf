"""All local servers together, and the ``cluster.env`` file that describes them (SPEC §8)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import ferretdb, postgres, redis_server, users
from .ferretdb import FerretDBServer
from .kube import ControlPlane, build_binaries
from .packages import ensure_packages
from .postgres import PostgresServer
from .redis_server import RedisServer

CLUSTER_ENV_KEYS = (
    "KUBECONFIG",
    "BANDSY_PG_HOST",
    "BANDSY_PG_PORT",
    "BANDSY_PG_ADMIN_USER",
    "BANDSY_PG_ADMIN_PASSWORD",
    # Beyond SPEC §8: a second PostgreSQL admin with CREATEROLE CREATEDB only (SPEC §5).
    "BANDSY_PG_LIMITED_ADMIN_USER",
    "BANDSY_PG_LIMITED_ADMIN_PASSWORD",
    "BANDSY_PG_CA_FILE",
    "BANDSY_PG_LOG_FILE",
    "BANDSY_REDIS_HOST",
    "BANDSY_REDIS_PORT",
    "BANDSY_REDIS_ADMIN_USER",
    "BANDSY_REDIS_ADMIN_PASSWORD",
    # Beyond SPEC §8: the MongoDB wire-protocol server (FerretDB) of the Mongo backend's tests.
    "BANDSY_MONGO_HOST",
    "BANDSY_MONGO_PORT",
    "BANDSY_MONGO_ADMIN_USER",
    "BANDSY_MONGO_ADMIN_PASSWORD",
    "BANDSY_MONGO_LOG_FILE",
    # Beyond SPEC §8: the users of SPEC §10 (a developer, a promoter, another team's developer,
    # the CI deploy identity), each with _USER, _TOKEN and _KUBECONFIG (hack/bandsy_dev/users.py).
    *users.ENV_KEYS,
)


@dataclass
class LocalEnvironment:
    workdir: Path
    kube: ControlPlane = field(init=False)
    postgres: PostgresServer = field(init=False)
    redis: RedisServer = field(init=False)
    mongo: FerretDBServer = field(init=False)

    def __post_init__(self) -> None:
        self.workdir = self.workdir.resolve()

    def start(self) -> None:
        ensure_packages()
        bin_dir = build_binaries()
        self.kube = ControlPlane(self.workdir / "kube", bin_dir)
        self.postgres = PostgresServer(self.workdir / "postgres")
        self.redis = RedisServer(self.workdir / "redis")
        self.mongo = FerretDBServer(self.workdir / "ferretdb", self.postgres)
        try:
            self.postgres.start()
            self.redis.start()
            self.mongo.start()
            self.kube.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for server in ("kube", "mongo", "redis", "postgres"):
            if server in self.__dict__:
                getattr(self, server).stop()

    def pids(self) -> list[int]:
        procs = [
            *self.kube.processes.values(),
            self.postgres.process,
            self.redis.process,
            self.mongo.process,
        ]
        return [p.pid for p in procs if p is not None and p.running()]

    def variables(self) -> dict[str, str]:
        return {
            "KUBECONFIG": str(self.kube.kubeconfig),
            "BANDSY_PG_HOST": "127.0.0.1",
            "BANDSY_PG_PORT": str(self.postgres.port),
            "BANDSY_PG_ADMIN_USER": postgres.ADMIN_USER,
            "BANDSY_PG_ADMIN_PASSWORD": self.postgres.admin_password,
            "BANDSY_PG_LIMITED_ADMIN_USER": postgres.LIMITED_ADMIN_USER,
            "BANDSY_PG_LIMITED_ADMIN_PASSWORD": self.postgres.limited_admin_password,
            "BANDSY_PG_CA_FILE": str(self.postgres.ca_file),
            "BANDSY_PG_LOG_FILE": str(self.postgres.log_file),
            "BANDSY_REDIS_HOST": "127.0.0.1",
            "BANDSY_REDIS_PORT": str(self.redis.port),
            "BANDSY_REDIS_ADMIN_USER": redis_server.ADMIN_USER,
            "BANDSY_REDIS_ADMIN_PASSWORD": self.redis.admin_password,
            "BANDSY_MONGO_HOST": "127.0.0.1",
            "BANDSY_MONGO_PORT": str(self.mongo.port),
            "BANDSY_MONGO_ADMIN_USER": ferretdb.ADMIN_USER,
            "BANDSY_MONGO_ADMIN_PASSWORD": self.mongo.admin_password,
            "BANDSY_MONGO_LOG_FILE": str(self.mongo.log_file),
            **users.variables(
                self.kube.user_tokens,
                {name: self.kube.user_kubeconfig(name) for name in self.kube.user_tokens},
            ),
        }

    def publish(self, state_dir: Path) -> Path:
        """Write ``kubeconfig`` and ``cluster.env`` into ``state_dir``; returns the env file."""
        kubeconfig = state_dir / "kubeconfig"
        kubeconfig.write_text(self.kube.kubeconfig.read_text())
        kubeconfig.chmod(0o600)
        values = {**self.variables(), "KUBECONFIG": str(kubeconfig.resolve())}
        assert tuple(values) == CLUSTER_ENV_KEYS
        env_file = state_dir / "cluster.env"
        env_file.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
        env_file.chmod(0o600)
        return env_file


def postgres_admin_args(variables: Mapping[str, str]) -> dict[str, Any]:
    """asyncpg ``connect``/``create_pool`` arguments for the admin of cluster.env's PostgreSQL
    (add ``ssl``: the server is hostssl only)."""
    return {
        "host": variables["BANDSY_PG_HOST"],
        "port": int(variables["BANDSY_PG_PORT"]),
        "user": variables["BANDSY_PG_ADMIN_USER"],
        "password": variables["BANDSY_PG_ADMIN_PASSWORD"],
        "database": "postgres",
    }


def read_cluster_env(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key] = value
    return values
