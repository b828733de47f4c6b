"""Fixtures for the client tests: the real system (queue-migrate, queue-api, queue-worker as
child processes on a database of their own) and clients pointed at it.

``system`` is shared by a module's tests (starting it is most of their time); each test works
in queues of its own (``fresh_queue``) so that none sees another's jobs. A test that bends the
system (cuts its database, say) starts its own with ``start_system``.
"""

import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e.stack import Api, Stack, Worker
from pg_provider import PgServer, create_database, drop_database
from queue_client import Client

HERE = Path(__file__).parent
WORKER_ENV = {
    "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    "WORKER_TASKS": "queue_worker.builtin_tasks,client_tasks",
    "WORKER_CONCURRENCY": "4",
}
# Revocations and limit changes reach the API at once, not after the default 5 s.
API_ENV = {"API_AUTH_CACHE_S": "0.2"}


@dataclass(frozen=True)
class System:
    stack: Stack
    database_url: str
    api: Api
    worker: Worker

    @property
    def url(self) -> str:
        return self.api.base_url

    @property
    def key(self) -> str:
        assert self.api.key is not None
        return self.api.key


def start_system(
    stack: Stack, database_url: str, api_database_url: str | None = None,
    api_env: Mapping[str, str] | None = None,
) -> System:  # fmt: skip
    """Migrate, then one API (on ``api_database_url`` if given: a proxy, say) and one worker
    with ``client_tasks``, all ready."""
    stack.migrate(database_url)
    api = stack.spawn_api(api_database_url or database_url, env={**API_ENV, **(api_env or {})})
    worker = stack.spawn_worker(database_url, "worker", WORKER_ENV)
    stack.wait_ready(api, worker)
    return System(stack=stack, database_url=database_url, api=api, worker=worker)


@pytest.fixture(name="stack")
def fx_stack(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(tmp_path)
    try:
        yield stack
    finally:
        stack.stop_all()


@pytest.fixture(name="system", scope="module")
def fx_system(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    name = f"c_{uuid.uuid4().hex[:12]}"
    url = create_database(pg_server, name)
    stack = Stack(tmp_path_factory.mktemp("system"))
    try:
        yield start_system(stack, url)
    finally:
        stack.stop_all()
        drop_database(pg_server, name)


@pytest.fixture(name="client")
def fx_client(system: System) -> Iterator[Client]:
    with Client(system.url, system.key) as client:
        yield client


@pytest.fixture(name="fresh_queue")
def fx_fresh_queue() -> str:
    """A queue no other test uses, which the worker does not serve: its jobs stay pending."""
    return f"q-{uuid.uuid4().hex[:8]}"
