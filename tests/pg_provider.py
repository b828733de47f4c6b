"""Where the tests' PostgreSQL comes from, in order of preference:

1. ``TEST_DATABASE_URL``: an existing server. Tests create their databases on it and drop them.
2. testcontainers' PostgreSQL module with compose.yaml's image, when a Docker engine answers
   (checked cheaply, no hang).
3. A throwaway cluster (initdb/pg_ctl) in a temporary directory on a free loopback port, from
   the PostgreSQL binaries that ``uv sync`` installs (see queue_devtools.pgcluster).

``TEST_PG_PROVIDER=docker`` insists on the second (an error if no engine answers), and
``TEST_PG_PROVIDER=cluster`` on the third even when an engine answers: CI chooses on purpose.

The container and the cluster are the session's own, so a chaos test may crash and restart
them; an external server is not.
"""

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from queue_core.db import normalize_database_url
from queue_devtools.pgcluster import PgCluster, PostgresNotFoundError, free_port

if TYPE_CHECKING:
    from testcontainers.community.postgres import PostgresContainer

T = TypeVar("T")

# The image compose.yaml runs, so the tests and the stack agree on the server.
POSTGRES_IMAGE = "postgres:18-alpine"
# The throwaway cluster's settings (queue_devtools.pgcluster), so that both branches run the
# suite alike: throwaway data needs no durability, and the API and e2e tests open many
# connections at once.
CONTAINER_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
}
RESTART_DEADLINE_S = 60.0
PROVIDER_CHOICES = ("docker", "cluster")


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


@dataclass
class ContainerServer:
    """The session's PostgreSQL container. Its host port is fixed when it is created, because
    Docker hands a restarted container a new ephemeral port and the URLs tests hold must stay
    valid across :meth:`restart`."""

    container: "PostgresContainer"
    admin_url: str
    owns_cluster: bool = True

    @property
    def container_id(self) -> str:
        container_id: str = self.container.get_container_id()
        return container_id

    def url(self, dbname: str) -> str:
        return with_database(self.admin_url, dbname)

    def restart(self) -> None:
        """SIGKILL the container (the postmaster and every backend at once, as a crash would)
        and start it again; returns once it accepts connections after crash recovery."""
        wrapped = self.container.get_wrapped_container()
        wrapped.kill()
        wrapped.wait()
        wrapped.start()
        run_sync(_wait_accepting(self.url("postgres"), RESTART_DEADLINE_S))


async def _wait_accepting(url: str, deadline_s: float) -> None:
    async with asyncio.timeout(deadline_s):
        while True:
            try:
                conn = await asyncpg.connect(url, timeout=2)
            except (TimeoutError, OSError, asyncpg.PostgresError):
                await asyncio.sleep(0.1)  # refused, reset or "starting up" while it recovers
                continue
            await conn.close()
            return


# Removes the session's containers once its stdin reaches end of file, which happens when the
# test process ends however it ends: SIGKILL or a CI timeout included. It replaces
# testcontainers' Ryuk, an image from Docker Hub that engines reaching no registry (mirrors,
# air-gapped sites, the local engine .ci/run uses) cannot pull. It finds the containers by the
# session label testcontainers puts on each, so one that is still starting is found too.
_REAPER = """
import sys
import docker
sys.stdin.buffer.read()
client = docker.from_env()
for container in client.containers.list(all=True, filters={"label": sys.argv[1]}):
    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        pass  # the session removed it itself meanwhile
"""


@contextlib.contextmanager
def _reaper(label: str) -> Iterator[None]:
    # A session of its own: the Ctrl-C that interrupts pytest must not kill the reaper too.
    reaper = subprocess.Popen(
        [sys.executable, "-c", _REAPER, label], stdin=subprocess.PIPE, start_new_session=True
    )
    try:
        yield
    finally:
        assert reaper.stdin is not None
        reaper.stdin.close()
        reaper.wait(timeout=30)


@contextlib.contextmanager
def _container_server() -> Iterator[ContainerServer]:
    # Imported here: only a session that uses Docker needs testcontainers and docker-py.
    from testcontainers.community.postgres import PostgresContainer  # noqa: PLC0415
    from testcontainers.core.config import testcontainers_config  # noqa: PLC0415
    from testcontainers.core.labels import LABEL_SESSION_ID, SESSION_ID  # noqa: PLC0415

    testcontainers_config.ryuk_disabled = True  # _REAPER does its work
    settings = [f"-c{name}={value}" for name, value in CONTAINER_SETTINGS.items()]
    container = (
        PostgresContainer(POSTGRES_IMAGE, driver=None)
        .with_bind_ports(5432, free_port())
        .with_command(["postgres", *settings])
    )
    with _reaper(f"{LABEL_SESSION_ID}={SESSION_ID}"), container:
        url = normalize_database_url(container.get_connection_url())
        yield ContainerServer(container, url)


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
    choice = os.environ.get("TEST_PG_PROVIDER", "")
    if choice and choice not in PROVIDER_CHOICES:
        raise RuntimeError(f"TEST_PG_PROVIDER={choice!r}: expected one of {PROVIDER_CHOICES}")
    if choice == "docker" and not docker_engine_answers():
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise RuntimeError(f"TEST_PG_PROVIDER=docker, but no Docker engine answers at {host}")
    if choice == "docker" or (not choice and docker_engine_answers()):
        with _container_server() as server:
            yield server
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
