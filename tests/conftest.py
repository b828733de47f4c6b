"""The fixture chain: one PostgreSQL server per session → a migrated template database → a
fresh database per test (``CREATE DATABASE … TEMPLATE``), dropped afterwards.

Tests marked ``containers`` build images and run containers on a Docker engine: they run only
with ``--containers`` (``make test-containers``) and are deselected otherwise, so that ``-m``
stays free for other selections (``make test PYTEST_ARGS='-m "not chaos"'``).
"""

import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from helpers import RecordedQueueEvents, TcpProxy, host_port
from pg_provider import PgServer, create_database, drop_database, provide_server
from queue_core.db import create_pool
from queue_core.migrate import upgrade
from queue_core.queue import Queue


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--containers",
        action="store_true",
        help="also run the tests marked `containers` (they need DOCKER_HOST: make test-containers)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--containers"):
        return
    deselected = [item for item in items if item.get_closest_marker("containers")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("containers")]


@pytest.fixture(name="pg_server", scope="session")
def fx_pg_server() -> Iterator[PgServer]:
    with provide_server() as server:
        yield server


@pytest.fixture(name="template_db", scope="session")
def fx_template_db(pg_server: PgServer) -> Iterator[str]:
    name = f"tq_template_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_server, name)
    upgrade(url)  # the real migrations, never metadata.create_all
    yield name
    drop_database(pg_server, name)


@pytest.fixture(name="db_url")
def fx_db_url(pg_server: PgServer, template_db: str) -> Iterator[str]:
    """A migrated database of this test's own."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = create_database(pg_server, name, template=template_db)
    yield url
    drop_database(pg_server, name)


@pytest.fixture(name="empty_db_url")
def fx_empty_db_url(pg_server: PgServer) -> Iterator[str]:
    """A database with no schema at all, for migration tests."""
    name = f"e_{uuid.uuid4().hex[:12]}"
    url = create_database(pg_server, name)
    yield url
    drop_database(pg_server, name)


@pytest.fixture(name="pool")
async def fx_pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(db_url, max_size=10)
    yield pool
    await pool.close()


@pytest.fixture(name="queue_events")
def fx_queue_events() -> RecordedQueueEvents:
    """What the ``queue`` fixture's Queue reported."""
    return RecordedQueueEvents()


@pytest.fixture(name="queue")
def fx_queue(pool: asyncpg.Pool, queue_events: RecordedQueueEvents) -> Queue:
    return Queue(pool, events=queue_events)


@pytest.fixture(name="db_proxy")
def fx_db_proxy(db_url: str) -> Iterator[tuple[TcpProxy, str]]:
    """A cuttable proxy to this test's database, and the database URL routed through it."""
    proxy = TcpProxy(*host_port(db_url))
    yield proxy, proxy.url(db_url)
    proxy.close()
