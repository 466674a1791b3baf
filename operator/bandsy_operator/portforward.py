"""Reaching a service or a database from a laptop (`bandsyctl connect` / `bandsyctl db`):
``kubectl port-forward`` through the API server, with the caller's kubeconfig and rights, and
the relay pod a database session forwards to.

kubectl rather than a client library's port-forward: it is the tool the team's outline names,
every developer has it, and the API server authorises it as ``pods/portforward`` for them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

from .builders.sessions import build_db_session_pod
from .kube import KubeApi, ObjectRef
from .relay import READY_MESSAGE

FORWARDING = re.compile(rb"Forwarding from 127\.0\.0\.1:(\d+) ->")
START_TIMEOUT = 60.0


class ForwardError(Exception):
    """kubectl could not forward; the message is kubectl's."""


def kubectl() -> str:
    return os.environ.get("BANDSY_KUBECTL", "kubectl")


@dataclass(frozen=True)
class Forward:
    local_port: int
    process: asyncio.subprocess.Process

    async def ended(self) -> int:
        """Waits for kubectl to end (a pod gone, the connection lost); its exit code."""
        return await self.process.wait()


@contextlib.asynccontextmanager
async def port_forward(
    namespace: str, target: str, remote_port: int, local_port: int = 0
) -> AsyncIterator[Forward]:
    """A forward from ``127.0.0.1:<local port>`` (0: any free one) to ``target`` (``svc/web``,
    ``pod/x``) while the block runs."""
    try:
        process = await _kubectl_port_forward(namespace, target, remote_port, local_port)
    except FileNotFoundError:
        raise ForwardError(
            f"{kubectl()} not found: install kubectl or set BANDSY_KUBECTL"
        ) from None
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        async with asyncio.timeout(START_TIMEOUT):
            while not (match := FORWARDING.search(line := await process.stdout.readline())):
                if not line:  # kubectl ended: why is on its stderr
                    raise ForwardError((await process.stderr.read()).decode().strip())
        # kubectl reports each connection on stdout: keep reading, or its pipe fills up.
        drain = asyncio.create_task(process.stdout.read())
        try:
            yield Forward(int(match.group(1)), process)
        finally:
            drain.cancel()
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


async def _kubectl_port_forward(
    namespace: str, target: str, remote_port: int, local_port: int
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        kubectl(),
        "port-forward",
        "--address",
        "127.0.0.1",
        "-n",
        namespace,
        target,
        f"{local_port or ''}:{remote_port}",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # Not in the terminal's process group: Ctrl-C is for psql or for us, and we end it.
        start_new_session=True,
    )


@contextlib.asynccontextmanager
async def relay_pod(
    api: KubeApi,
    service: str,
    environment: str,
    namespace: str,
    image: str,
    target: tuple[str, int],
) -> AsyncIterator[str]:
    """A relay pod to ``target`` for the block's length, created and deleted with the
    caller's credentials; yields its name once it listens."""
    pod = build_db_session_pod(service, environment, namespace, image, target, secrets.token_hex(3))
    created = await api.create(pod)
    name = str(created["metadata"]["name"])
    ref = ObjectRef("v1", "Pod", namespace, name)
    try:
        async with asyncio.timeout(START_TIMEOUT):
            await _listening(api, namespace, name)
        yield name
    finally:
        await api.delete(ref)


async def _listening(api: KubeApi, namespace: str, pod: str) -> None:
    while True:
        live = await api.get(ObjectRef("v1", "Pod", namespace, pod))
        phase = ((live or {}).get("status") or {}).get("phase")
        if phase in ("Failed", "Succeeded") or live is None:
            raise ForwardError(f"the relay pod {namespace}/{pod} ended ({phase})")
        if phase == "Running" and READY_MESSAGE in await api.log_tail(namespace, pod, 5):
            return
        await asyncio.sleep(0.5)
