"""Fixtures for the API tests: the real Litestar app, driven in-process by Litestar's
``AsyncTestClient``, against this test's own migrated PostgreSQL database (``db_url``).

A client is entered as a context manager, so the app's lifespan (pool open and close) really runs.
Auth stays on: every API test database comes from a template holding an admin key (every scope,
every queue, made by the real ``KeyStore``), which clients send unless a test says otherwise.
"""

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
import structlog
from litestar.plugins.prometheus import PrometheusMiddleware
from litestar.testing import AsyncTestClient
from structlog.typing import EventDict

from api.support import (
    ADMIN_KEY_NAME,
    BODY_TIMEOUT_S,
    TEST_CLIENT_BASE_URL,
    ApiClient,
    ClientFactory,
    Outage,
    bearer,
    build_app,
)
from e2e.stack import Api, Stack
from helpers import TcpProxy
from pg_provider import PgServer, create_database, drop_database, run_sync
from queue_core.db import create_pool
from queue_core.errors import TransientDatabaseError
from queue_core.keys import ALL_SCOPES, KeyStore
from queue_devtools.pgcluster import free_port

_ADMIN_KEY = pytest.StashKey[str]()


async def _create_admin_key(database_url: str) -> str:
    pool = await create_pool(database_url, max_size=1)
    try:
        new = await KeyStore(pool).create(name=ADMIN_KEY_NAME, scopes=ALL_SCOPES)
    finally:
        await pool.close()
    return new.secret


@pytest.fixture(name="template_db", scope="session")
def fx_api_template_db(
    request: pytest.FixtureRequest, pg_server: PgServer, template_db: str
) -> Iterator[str]:
    """The migrated template (the session's, cloned) plus the admin key, for the API tests."""
    name = f"tq_api_template_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_server, name, template=template_db)
    request.config.stash[_ADMIN_KEY] = run_sync(_create_admin_key(url))
    yield name
    drop_database(pg_server, name)


@pytest.fixture(name="admin_key", scope="session")
def fx_admin_key(request: pytest.FixtureRequest, template_db: str) -> str:
    """The secret of the admin key in every API test database."""
    assert template_db
    return request.config.stash[_ADMIN_KEY]


@pytest.fixture(name="logs", autouse=True)
def fx_logs() -> Iterator[list[EventDict]]:
    """The structlog events the app emits during the test, captured instead of rendered (the
    default console renderer would spend most of a 500 test drawing its traceback)."""
    with structlog.testing.capture_logs() as events:
        yield events


@pytest.fixture(autouse=True, scope="module")
def _forget_this_modules_request_series() -> Iterator[None]:
    """Each module's requests leave (route, method, status) series in the process-wide
    Prometheus registry, which every later in-process /metrics page of the session (the
    worker's side port included) would carry and be measured with: the more routes, the more
    series. Forgotten after each module."""
    yield
    for metric in PrometheusMiddleware._metrics.values():  # noqa: SLF001 - Litestar's registry
        metric.clear()


@pytest.fixture(name="make_client")
def fx_make_client(admin_key: str) -> ClientFactory:
    """``make_client(database_url, max_body_bytes=..., key=..., base_url=..., **settings)``: a
    started client for a fresh app, sending ``key`` (the admin key by default; None: no
    Authorization), its requests naming ``base_url``'s host in their Host header.

    The app checks the key once before the test starts, when the database answers: a key it
    has checked stays good while the database is down (auth.py), so outage tests see the 503s
    of their subject, not an authentication they did not ask about."""

    @asynccontextmanager
    async def make(
        database_url: str,
        *,
        max_body_bytes: int | None = None,
        key: str | None = admin_key,
        base_url: str = TEST_CLIENT_BASE_URL,
        **settings: Any,
    ) -> AsyncIterator[ApiClient]:
        app = build_app(database_url, max_body_bytes=max_body_bytes, **settings)
        async with AsyncTestClient(app=app, base_url=base_url) as client:
            if key is not None:
                client.headers.update(bearer(key))
                # The app runs on the client's portal (another thread and loop).
                with contextlib.suppress(TransientDatabaseError):
                    client.blocking_portal.call(app.state.key_checker.caller, f"Bearer {key}")
            yield client

    return make


@pytest.fixture(name="client")
async def fx_client(make_client: ClientFactory, db_url: str) -> AsyncIterator[ApiClient]:
    async with make_client(db_url) as client:
        yield client


@pytest.fixture(name="db")
async def fx_db(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the test's database, to check what the API really stored."""
    conn = await asyncpg.connect(db_url, timeout=10)
    yield conn
    await conn.close()


@pytest.fixture(name="outage")
async def fx_outage(
    make_client: ClientFactory, db_proxy: tuple[TcpProxy, str]
) -> AsyncIterator[Outage]:
    """A client whose database connection goes through a proxy the test can cut."""
    proxy, proxied_url = db_proxy
    async with make_client(proxied_url) as client:
        yield Outage(client=client, proxy=proxy)


@pytest.fixture(name="shared_db_url", scope="module")
def fx_shared_db_url(pg_server: PgServer, template_db: str) -> Iterator[str]:
    """One migrated database for a whole module, for requests that write nothing: rejected
    input (checked by the row count before and after, not by an empty table), reads of absent
    rows and the OpenAPI document. It saves a CREATE/DROP DATABASE per case."""
    name = f"api_{uuid.uuid4().hex[:12]}"
    url = create_database(pg_server, name, template=template_db)
    yield url
    drop_database(pg_server, name)


@pytest.fixture(name="shared_client")
async def fx_shared_client(
    make_client: ClientFactory, shared_db_url: str
) -> AsyncIterator[ApiClient]:
    async with make_client(shared_db_url) as client:
        yield client


@pytest.fixture(name="shared_db")
async def fx_shared_db(shared_db_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(shared_db_url, timeout=10)
    yield conn
    await conn.close()


@pytest.fixture(name="api_process", scope="module")
def fx_api_process(
    tmp_path_factory: pytest.TempPathFactory, shared_db_url: str, admin_key: str
) -> Iterator[Api]:
    """A real ``queue-api`` process (uvicorn, httptools: what production runs) on this module's
    database, with API_BODY_TIMEOUT_S=BODY_TIMEOUT_S, for what only a real server shows: raw
    sockets, timeouts, and Schemathesis over HTTP."""
    stack = Stack(tmp_path_factory.mktemp("api"))
    port = free_port()
    proc = stack.spawn(
        "api",
        ["queue-api"],
        {
            "DATABASE_URL": shared_db_url,
            "API_HOST": "127.0.0.1",
            "API_PORT": str(port),
            "API_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        },
    )
    api = Api(proc, f"http://127.0.0.1:{port}", key=admin_key)
    try:
        stack.wait_ready(api)
        yield api
    finally:
        stack.stop_all()
