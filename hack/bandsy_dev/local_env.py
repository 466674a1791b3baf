"""All local servers together, and the ``cluster.env`` file that describes them (SPEC §8).

``LocalEnvironment(workdir)`` decides like ``make cluster-up``: a real node (SPEC §8.1) when
root and NODE is not 0. ``with_node=False`` keeps the node-less mode (the test session and the
benchmark, which play the deployment controller themselves); ``with_node=True`` insists.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import ferretdb, node_net, postgres, redis_server, s3_server, users
from .ferretdb import FerretDBServer
from .images import TEST_IMAGE_REPOSITORY
from .kube import ControlPlane, build_binaries
from .node import Node, build_node_binaries, node_wanted
from .packages import ensure_packages
from .postgres import PostgresServer
from .redis_server import RedisServer
from .s3_server import S3Server

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
    # Beyond SPEC §8: the S3 API (moto) the backups of SPEC §11 are tested against, HTTPS only.
    "BANDSY_S3_ENDPOINT",
    "BANDSY_S3_REGION",
    "BANDSY_S3_ACCESS_KEY_ID",
    "BANDSY_S3_SECRET_ACCESS_KEY",
    "BANDSY_S3_CA_FILE",
    # SPEC §8.1: 1 when a real node runs pods, else 0 (and NODE_ENV_KEYS are absent).
    "BANDSY_NODE",
    # Beyond SPEC §8: the users of SPEC §10 (a developer, a promoter, another team's developer,
    # the CI deploy identity), each with _USER, _TOKEN and _KUBECONFIG (hack/bandsy_dev/users.py).
    *users.ENV_KEYS,
)
# Only with a node: the addresses pods use for the databases and S3, the test app's repository.
NODE_ENV_KEYS = (
    "BANDSY_POD_PG_HOST",
    "BANDSY_POD_REDIS_HOST",
    "BANDSY_POD_S3_ENDPOINT",
    "BANDSY_TEST_IMAGE",
)


@dataclass
class LocalEnvironment:
    workdir: Path
    with_node: bool | None = None  # None: node_wanted() decides
    # The API server's audit log of the operator's writes (kube.AUDIT_POLICY): the test session's
    # (benchmarks leave it off: it costs the API server CPU on the operator's side only).
    audit: bool = False
    kube: ControlPlane = field(init=False)
    postgres: PostgresServer = field(init=False)
    redis: RedisServer = field(init=False)
    mongo: FerretDBServer = field(init=False)
    s3: S3Server = field(init=False)
    node: Node | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.workdir = self.workdir.resolve()
        if self.with_node is None:
            self.with_node = node_wanted()
        elif self.with_node and os.geteuid() != 0:
            raise PermissionError("the node needs root (bridge, firewall, mounts, cgroups)")

    def start(self) -> None:
        ensure_packages(node=bool(self.with_node))
        bin_dir = build_binaries()
        self.kube = ControlPlane(
            self.workdir / "kube", bin_dir, node=bool(self.with_node), audit=self.audit
        )
        gateway = node_net.POD_GATEWAY if self.with_node else None
        self.postgres = PostgresServer(
            self.workdir / "postgres",
            pod_gateway=gateway,
            pod_cidr=node_net.CLUSTER_CIDR if gateway else None,
        )
        self.redis = RedisServer(self.workdir / "redis", pod_gateway=gateway)
        self.mongo = FerretDBServer(self.workdir / "ferretdb", self.postgres)
        self.s3 = S3Server(self.workdir / "s3", pod_gateway=gateway)
        try:
            if self.with_node:
                self.node = Node(self.workdir / "node", self.kube, bin_dir, build_node_binaries())
                # The bridge first: the databases and S3 listen on its gateway address.
                self.node.claim(pod_tcp_ports=(self.postgres.port, self.redis.port, self.s3.port))
            self.postgres.start()
            self.redis.start()
            self.mongo.start()
            self.s3.start()
            self.kube.start()
            if self.node is not None:
                self.node.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        # The node first: draining needs the API server, and pods use the databases.
        try:
            if self.node is not None:
                self.node.stop()
        finally:
            for server in ("kube", "s3", "mongo", "redis", "postgres"):
                if server in self.__dict__:
                    getattr(self, server).stop()

    def pids(self) -> list[int]:
        procs = [
            *self.kube.processes.values(),
            self.postgres.process,
            self.redis.process,
            self.mongo.process,
            self.s3.process,
        ]
        node_pids = self.node.pids() if self.node is not None else []
        return [p.pid for p in procs if p is not None and p.running()] + node_pids

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
            "BANDSY_S3_ENDPOINT": self.s3.endpoint(),
            "BANDSY_S3_REGION": s3_server.REGION,
            "BANDSY_S3_ACCESS_KEY_ID": self.s3.access_key_id,
            "BANDSY_S3_SECRET_ACCESS_KEY": self.s3.secret_access_key,
            "BANDSY_S3_CA_FILE": str(self.s3.ca_file),
            "BANDSY_NODE": "1" if self.node is not None else "0",
            **({"BANDSY_AUDIT_LOG": str(self.kube.audit_log)} if self.audit else {}),
            **users.variables(
                self.kube.user_tokens,
                {name: self.kube.user_kubeconfig(name) for name in self.kube.user_tokens},
            ),
            **self._node_variables(),
        }

    def _node_variables(self) -> dict[str, str]:
        if self.node is None:
            return {}
        return {
            "BANDSY_POD_PG_HOST": node_net.POD_GATEWAY,
            "BANDSY_POD_REDIS_HOST": node_net.POD_GATEWAY,
            "BANDSY_POD_S3_ENDPOINT": self.s3.endpoint(node_net.POD_GATEWAY),
            "BANDSY_TEST_IMAGE": TEST_IMAGE_REPOSITORY,
        }

    def publish(self, state_dir: Path) -> Path:
        """Write ``kubeconfig`` and ``cluster.env`` into ``state_dir``; returns the env file."""
        kubeconfig = state_dir / "kubeconfig"
        kubeconfig.write_text(self.kube.kubeconfig.read_text())
        kubeconfig.chmod(0o600)
        values = {**self.variables(), "KUBECONFIG": str(kubeconfig.resolve())}
        assert tuple(values) == CLUSTER_ENV_KEYS + (NODE_ENV_KEYS if self.node else ())
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
