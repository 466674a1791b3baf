"""A real S3 API on loopback for the database backups (SPEC §11): moto in server mode, over HTTPS.

Why moto: pure Python (Apache-2.0), a dev dependency like any other, and it serves the S3 calls
backups need (multipart uploads, prefix listings, deletes); MinIO is AGPL and archived
(``../shared/research/next_wave.md`` (h)). Objects live in memory, for the process's lifetime;
lifecycle rules are stored but never expire anything (retention is the operator's job anyway).

One launcher process (``python -m bandsy_dev.s3_server serve``) runs one werkzeug server per
address (127.0.0.1 and, with a node, the pods' gateway) on moto's WSGI app, in threads of the same
process, so every listener sees the same buckets. ``ThreadedMotoServer`` has no TLS option; the
werkzeug server it wraps has, so the launcher builds that server itself.

Requests must be signed with the generated key: moto checks SigV4 signatures against its IAM
backend once ``INITIAL_NO_AUTH_ACTION_COUNT`` is 0, so the launcher creates one IAM user holding
that key and an ``s3:*`` policy. moto's own control API (``/moto-api/``: reset everything, switch
authentication off) needs no signature, so the launcher refuses it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import signal
import ssl
import string
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .procs import ManagedProcess, free_port
from .tls import CertificateAuthority

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from werkzeug.serving import BaseWSGIServer

REGION = "us-east-1"
# The IAM user moto checks signatures and permissions against.
USER = "bandsy-backups"
_ACCESS_KEY_ID_ENV = "BANDSY_S3_ACCESS_KEY_ID"
_SECRET_ACCESS_KEY_ENV = "BANDSY_S3_SECRET_ACCESS_KEY"  # noqa: S105 (a name, not a secret)
_ALLOW_ALL_S3 = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
)


def _new_access_key_id() -> str:
    # AWS's shape for a long-term user key: moto treats AKIA... as an IAM user's key.
    alphabet = string.ascii_uppercase + string.digits
    return "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))


@dataclass
class S3Server:
    workdir: Path
    port: int = field(default_factory=free_port)
    access_key_id: str = field(default_factory=_new_access_key_id)
    secret_access_key: str = field(default_factory=lambda: secrets.token_urlsafe(30))
    # With a node: also listen on the pods' gateway (SPEC §8.1), in the certificate too.
    pod_gateway: str | None = None
    process: ManagedProcess | None = None

    @property
    def ca_file(self) -> Path:
        return self.workdir / "ca.crt"

    @property
    def log_file(self) -> Path:
        return self.workdir / "s3.log"

    def endpoint(self, host: str = "127.0.0.1") -> str:
        """The URL clients use: ``host`` is loopback or, for pods, the gateway."""
        return f"https://{host}:{self.port}"

    def _addresses(self) -> list[str]:
        return ["127.0.0.1", *([self.pod_gateway] if self.pod_gateway else [])]

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cert, key = self.workdir / "server.crt", self.workdir / "server.key"
        if not self.ca_file.exists():
            ca = CertificateAuthority.create("bandsy-s3-ca")
            ca.write_cert(self.ca_file)
            gateway = (self.pod_gateway,) if self.pod_gateway else ()
            ca.issue_server_cert(cert, key, "localhost", ips=gateway)
        listen = [arg for address in self._addresses() for arg in ("--listen", address)]
        # The key goes through the environment, not the command line that `ps` shows.
        env = {
            **os.environ,
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
            _ACCESS_KEY_ID_ENV: self.access_key_id,
            _SECRET_ACCESS_KEY_ENV: self.secret_access_key,
        }
        argv = [sys.executable, "-m", "bandsy_dev.s3_server", "serve", "--port", str(self.port)]
        argv += ["--cert", str(cert), "--key", str(key), *listen]
        self.process = ManagedProcess("s3", argv, self.log_file, env=env)
        self.process.start()
        self.process.wait_until(self._answers, timeout=60, what="answering HTTPS")

    def _answers(self) -> bool:
        """Every listener completes a verified TLS handshake and answers HTTP. The path is the
        refused control API: S3 itself fails an unsigned request with a traceback in the log."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        for address in self._addresses():
            conn = http.client.HTTPSConnection(address, self.port, timeout=2, context=context)
            try:
                conn.request("GET", "/moto-api/")
                conn.getresponse()
            finally:
                conn.close()
        return True

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


# -- the launcher (runs in its own process) --


def _refuse_control_api(app: WSGIApplication) -> WSGIApplication:
    def guarded(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").startswith("/moto-api"):
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"moto's control API is disabled in the bandsy harness\n"]
        return app(environ, start_response)

    return guarded


def _add_user(access_key_id: str, secret_access_key: str) -> None:
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.iam.models import iam_backends

    iam = iam_backends[DEFAULT_ACCOUNT_ID]["aws"]
    iam.create_user(REGION, USER)
    iam.put_user_policy(USER, "s3-all", _ALLOW_ALL_S3)
    # IAM has no call that takes a chosen key, so moto's generated one is replaced in place
    # (its key store is indexed by the key's id).
    key = iam.create_access_key(USER)
    del iam.access_keys[key.access_key_id]
    key.access_key_id, key.secret_access_key = access_key_id, secret_access_key
    iam.access_keys[key.access_key_id] = key


def _https_server(
    address: str, port: int, app: WSGIApplication, context: ssl.SSLContext
) -> BaseWSGIServer:
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    server = make_server(address, port, app, threaded=True, request_handler=MotoRequestHandler)
    # werkzeug's own TLS would handshake in the accept loop, where one client that never sends
    # its hello stalls every other; lazily, the handshake runs in the request's thread.
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
    server.ssl_context = context  # requests see https (wsgi.url_scheme)
    return server


_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def serve(addresses: Sequence[str], port: int, cert: Path, key: Path) -> None:
    from moto import settings
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    _add_user(os.environ[_ACCESS_KEY_ID_ENV], os.environ[_SECRET_ACCESS_KEY_ENV])
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # check every request's signature from the first
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    # Blocked before the threads start, so they inherit it and the main thread alone takes it.
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    app = _refuse_control_api(DomainDispatcherApplication(create_backend_app))
    servers = [_https_server(address, port, app, context) for address in addresses]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"S3 (moto) serving https on port {port} at {', '.join(addresses)}", flush=True)
    signal.sigwait(_STOP_SIGNALS)
    for server in servers:
        server.shutdown()  # serve_forever closes the socket on its way out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bandsy_dev.s3_server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the S3 API (the harness starts it)")
    serve_cmd.add_argument("--listen", action="append", required=True)
    serve_cmd.add_argument("--port", type=int, required=True)
    serve_cmd.add_argument("--cert", type=Path, required=True)
    serve_cmd.add_argument("--key", type=Path, required=True)
    args = parser.parse_args(argv)
    serve(args.listen, args.port, args.cert, args.key)


if __name__ == "__main__":
    main()
