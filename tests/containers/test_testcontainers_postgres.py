"""The Docker branch of the tests' PostgreSQL (pg_provider): testcontainers' PostgreSQL module,
which the whole suite runs on when DOCKER_HOST names an engine. `make test-containers` sets
TEST_PG_PROVIDER=docker, so these tests fail instead of falling back to the local cluster."""

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from containers.compose import docker_cli
from helpers import wait_until
from pg_provider import ContainerServer, PgServer

pytestmark = pytest.mark.containers

TESTS_DIR = Path(__file__).resolve().parents[1]
# A test session in miniature: the provider's container, its id printed, then a long wait.
SESSION_SCRIPT = """
import time
from pg_provider import provide_server
with provide_server() as server:
    print(server.container_id, flush=True)
    time.sleep(600)
"""


def _container_exists(container_id: str) -> bool:
    out = subprocess.run(
        [docker_cli(), "ps", "--all", "--quiet", "--no-trunc", "--filter", f"id={container_id}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return container_id in out


async def test_the_session_server_is_a_container_that_survives_a_crash_on_the_same_url(
    pg_server: PgServer, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert isinstance(pg_server, ContainerServer), (
        f"the session's server is a {type(pg_server).__name__}: set DOCKER_HOST and "
        "TEST_PG_PROVIDER=docker"
    )
    assert pg_server.owns_cluster, "the chaos test restarts it"
    conn = await asyncpg.connect(db_url)
    try:
        version = await conn.fetchval("SELECT version()")
        started = await conn.fetchval("SELECT pg_postmaster_start_time()")
        await conn.execute("SET synchronous_commit = on")  # this row must survive the crash
        await conn.execute("CREATE TABLE survivor (n int)")
        await conn.execute("INSERT INTO survivor VALUES (1)")
    finally:
        await conn.close()

    await asyncio.to_thread(pg_server.restart)

    conn = await asyncpg.connect(db_url)
    try:
        assert await conn.fetchval("SELECT pg_postmaster_start_time()") > started
        assert await conn.fetchval("SELECT count(*) FROM survivor") == 1
    finally:
        await conn.close()
    with capsys.disabled():
        print(f"\ntestcontainers' server: {version}")  # noqa: T201 - which PostgreSQL ran


def test_a_session_killed_outright_leaves_no_container() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", SESSION_SCRIPT],
        cwd=TESTS_DIR,
        env={**os.environ, "TEST_PG_PROVIDER": "docker"},
        stdout=subprocess.PIPE,
        text=True,
    ) as session:
        try:
            assert session.stdout is not None
            container_id = session.stdout.readline().strip()
            assert container_id, "the session printed no container id"
            assert _container_exists(container_id)
        finally:
            session.kill()  # no `finally` of the session runs: only the reaper can clean up
    wait_until(
        lambda: not _container_exists(container_id),
        timeout_s=30,
        interval_s=0.5,
        what="the reaper removed the container",
    )
