"""Fixtures for the web console's tests: a real headless Chromium (Debian's ``chromium``, driven
by Playwright; never a browser Playwright downloads) against real queue-api and queue-worker
processes on a migrated database of their own.

No Chromium is a failure, not a skip: CI installs it (``.ci/run``), and so does ``make test``
on a machine that lacks it (``make browser``).
"""

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from e2e.stack import Api, Stack, Worker
from pg_provider import run_sync
from queue_core.db import create_pool
from queue_core.keys import ALL_SCOPES, KeyStore, Scope

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")
UI_SECRET = "ui-test-secret-" + "s" * 32
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def chromium_path() -> str:
    """The system's Chromium: ``CHROMIUM_PATH``, else ``chromium`` on PATH."""
    explicit = os.environ.get("CHROMIUM_PATH")
    if explicit:
        if not Path(explicit).is_file():
            pytest.fail(f"CHROMIUM_PATH={explicit} is not a file", pytrace=False)
        return explicit
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "Chromium is not installed, and the web console's tests need a real browser: install "
        "Debian's package (`apt-get install -y chromium`, or `make browser`) or point "
        "CHROMIUM_PATH at a Chromium binary",
        pytrace=False,
    )


# Per module, not per session: Playwright's sync API runs an event loop in this thread while it
# is open, and every asyncio test after it would fail to start its own.
@pytest.fixture(name="browser", scope="module")
def fx_browser() -> Iterator[Browser]:
    executable = chromium_path()
    with sync_playwright() as playwright:
        # --no-sandbox: CI and these machines run as root, where Chromium's sandbox cannot start.
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@dataclass(frozen=True)
class Console:
    """The system under test: one API, one worker (queues ``default`` and ``other``), and
    keys made in its database."""

    api: Api
    worker: Worker
    database_url: str
    admin_key: str  # every scope
    reader_key: str  # jobs:read only

    @property
    def url(self) -> str:
        return self.api.base_url + "/ui/"


async def _create_key(database_url: str, name: str, scopes: tuple[Scope, ...]) -> str:
    pool = await create_pool(database_url, max_size=1)
    try:
        return (await KeyStore(pool).create(name=name, scopes=scopes)).secret
    finally:
        await pool.close()


def create_key(database_url: str, name: str, scopes: tuple[Scope, ...]) -> str:
    return run_sync(_create_key(database_url, f"{name}-{uuid.uuid4().hex[:6]}", scopes))


@pytest.fixture(name="stack")
def fx_stack(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(tmp_path)
    try:
        yield stack
    finally:
        stack.stop_all()


@pytest.fixture(name="console")
def fx_console(stack: Stack, empty_db_url: str) -> Console:
    stack.migrate(empty_db_url)
    api = stack.spawn_api(empty_db_url, env={"API_UI_SECRET": UI_SECRET})
    worker = stack.spawn_worker(
        empty_db_url, "worker", {"WORKER_QUEUES": "default,other", "WORKER_CONCURRENCY": "2"}
    )
    stack.wait_ready(api, worker)
    return Console(
        api=api,
        worker=worker,
        database_url=empty_db_url,
        admin_key=create_key(empty_db_url, "ui-admin", ALL_SCOPES),
        reader_key=create_key(empty_db_url, "ui-reader", (Scope.JOBS_READ,)),
    )


@pytest.fixture(name="context")
def fx_context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
    context.set_default_timeout(20_000)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture(name="page")
def fx_page(context: BrowserContext) -> Page:
    return context.new_page()
