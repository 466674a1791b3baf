"""``python -m bandsy_operator.relay HOST PORT``: a TCP relay in a pod, which `bandsyctl db`
port-forwards to. It reaches a database wherever the environment's pods reach it (a cluster
Service, a managed database on a private network), which a laptop may not.

Bytes only: TLS runs end to end between psql and the server, and the relay sees no
credentials. It stops at its pod's deadline or when the session deletes the pod."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

log = logging.getLogger("bandsy_operator.relay")
LISTEN_PORT = 5432
READY_MESSAGE = "relaying"  # in its log once it listens: what `bandsyctl db` waits for
CHUNK = 65536


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def serve(host: str, port: int, listen_port: int = LISTEN_PORT) -> asyncio.Server:
    """Every connection to ``listen_port`` is joined to a new one to ``host:port``."""

    async def join(client_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        try:
            server_reader, server = await asyncio.open_connection(host, port)
        except OSError as error:
            log.warning("cannot reach %s:%d: %s", host, port, error)
            client.close()
            return
        await asyncio.gather(_pipe(client_reader, server), _pipe(server_reader, client))

    # Loopback only: a port-forward connects inside the pod; nothing else may use the relay.
    return await asyncio.start_server(join, "127.0.0.1", listen_port)


async def _main(host: str, port: int, listen_port: int) -> None:
    server = await serve(host, port, listen_port)
    log.info("%s :%d to %s:%d", READY_MESSAGE, listen_port, host, port)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bandsy_operator.relay")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--listen", type=int, default=LISTEN_PORT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    asyncio.run(_main(args.host, args.port, args.listen))


if __name__ == "__main__":
    main()
