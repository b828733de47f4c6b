"""Where the tests' PostgreSQL comes from, in order of preference:

1. ``TEST_DATABASE_URL``: an existing server. Tests create their databases on it and drop them.
2. testcontainers' ``postgres`` image, when a Docker engine answers (checked cheaply, no hang).
3. A throwaway cluster (initdb/pg_ctl) in a temporary directory on a free loopback port, from
   the PostgreSQL binaries that ``uv sync`` installs (see queue_devtools.pgcluster).

Only the last one is owned by the tests in full, so only it can be restarted by a chaos test.
"""

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from queue_core.db import normalize_database_url
from queue_devtools.pgcluster import PgCluster, PostgresNotFoundError

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code, even inside a running event loop."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            error.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def with_database(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{dbname}"))


class PgServer(Protocol):
    owns_cluster: bool

    def url(self, dbname: str) -> str: ...

    def restart(self) -> None: ...


@dataclass
class ExternalServer:
    admin_url: str
    owns_cluster: bool = False

    def url(self, dbname: str) -> str:
        return with_database(self.admin_url, dbname)

    def restart(self) -> None:
        raise NotImplementedError("an external server is not ours to restart")


@dataclass
class ClusterServer:
    cluster: PgCluster
    owns_cluster: bool = True

    def url(self, dbname: str) -> str:
        return self.cluster.url(dbname)

    def restart(self) -> None:
        self.cluster.restart()


def docker_engine_answers(timeout_s: float = 1.0) -> bool:
    """True when a Docker engine responds to /_ping. A missing socket or a silent one is False."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return bool(os.environ.get("DOCKER_HOST"))  # a remote engine: let testcontainers try
    path = host.removeprefix("unix://")
    if not os.path.exists(path):  # noqa: PTH110 - a socket path, not a file we open
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b"OK" in sock.recv(1024)
    except OSError:
        return False


@contextlib.contextmanager
def provide_server() -> Iterator[PgServer]:
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield ExternalServer(normalize_database_url(url))
        return
    if docker_engine_answers():
        from testcontainers.postgres import PostgresContainer  # noqa: PLC0415 - needs Docker

        with PostgresContainer("postgres:18-alpine", driver=None) as container:
            yield ExternalServer(normalize_database_url(container.get_connection_url()))
        return
    try:
        cluster = PgCluster.create()
    except PostgresNotFoundError as exc:
        raise RuntimeError(
            f"No PostgreSQL for the tests: {exc}. Set TEST_DATABASE_URL to a server, start a "
            "Docker engine, or install the dev dependencies with `uv sync`."
        ) from exc
    try:
        cluster.start()
        yield ClusterServer(cluster)
    finally:
        cluster.destroy()


async def _admin(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def create_database(server: PgServer, name: str, template: str | None = None) -> str:
    clause = f' TEMPLATE "{template}"' if template else ""
    run_sync(_admin(server.url("postgres"), f'CREATE DATABASE "{name}"{clause}'))
    return server.url(name)


def drop_database(server: PgServer, name: str) -> None:
    run_sync(_admin(server.url("postgres"), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
