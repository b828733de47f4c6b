"""The API's connection pool exhausted: the jobs table locked by another session, so that every
connection of the API's pool waits inside an INSERT and the requests behind them wait for a
connection. Once the lock goes, every enqueue the API acknowledged is stored, once."""

import asyncio
import time
import uuid

import asyncpg
import pytest

from e2e.stack import Stack
from queue_client import AsyncClient, NewJob
from reliability_figures import Scenario, record

pytestmark = pytest.mark.e2e

POOL_SIZE = 2  # API_DB_POOL_SIZE: small, so that a few requests exhaust it
REQUESTS = 100
HOLD_S = 2.0
CLIENT_TIMEOUT_S = 60.0  # longer than the hold: the requests wait, none gives up


async def _blocked_api_backends(conn: asyncpg.Connection) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    )
    return count


async def _flood(
    database_url: str, url: str, key: str, queue: str
) -> tuple[list[uuid.UUID], float, int, list[uuid.UUID]]:
    """REQUESTS concurrent enqueues while the table is locked; the ids acknowledged, seconds
    from the lock's release to the last answer, the API connections seen blocked, and the
    ids of the jobs stored."""
    async with AsyncClient(url, key, timeout_s=CLIENT_TIMEOUT_S) as client:
        locker = await asyncpg.connect(database_url)
        try:
            transaction = locker.transaction()
            await transaction.start()
            await locker.execute("LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE")
            flood = asyncio.gather(
                *(
                    client.enqueue_batch([NewJob(type="noop", payload={"n": n}, queue=queue)])
                    for n in range(REQUESTS)
                )
            )
            task = asyncio.ensure_future(flood)
            deadline = time.monotonic() + 30
            observer = await asyncpg.connect(database_url)
            try:
                while (blocked := await _blocked_api_backends(observer)) < POOL_SIZE:
                    assert time.monotonic() < deadline, f"{blocked} API connections blocked"
                    await asyncio.sleep(0.05)
                await asyncio.sleep(HOLD_S)
                assert not task.done(), "the requests were answered while the table was locked"
                await transaction.rollback()
                released_at = time.monotonic()
                batches = await task
                answered_s = time.monotonic() - released_at
                stored = [
                    row["id"]
                    for row in await observer.fetch("SELECT id FROM jobs WHERE queue = $1", queue)
                ]
            finally:
                await observer.close()
        finally:
            await locker.close()
    ids = [job_id for batch in batches for job_id in batch.ids]
    return ids, answered_s, blocked, stored


def test_every_acknowledged_enqueue_is_stored_once_after_the_pool_runs_dry(
    stack: Stack, db_url: str
) -> None:
    api = stack.spawn_api(db_url, env={"API_DB_POOL_SIZE": str(POOL_SIZE)})
    stack.wait_ready(api)
    assert api.key is not None
    queue = f"pool-{uuid.uuid4().hex[:8]}"
    ids, answered_s, blocked, stored = asyncio.run(_flood(db_url, api.base_url, api.key, queue))
    record(
        Scenario(
            key="55-api-pool-exhausted",
            title="The API's connection pool exhausted",
            what=(
                f"An API with API_DB_POOL_SIZE={POOL_SIZE}; another session locks the jobs"
                f" table, {REQUESTS} concurrent enqueues arrive, every pooled connection waits"
                f" in its INSERT and the requests behind them wait their turn; {HOLD_S:g} s"
                " later the lock is released."
            ),
            test="tests/e2e/test_e2e_pool_exhaustion.py::"
            "test_every_acknowledged_enqueue_is_stored_once_after_the_pool_runs_dry",
            acknowledged=len(ids),
            lost=len(set(ids) - set(stored)),
            recover_s=answered_s,
            recover_what="from the lock's release to the last request answered",
            extra={
                "API connections seen blocked": blocked,
                "duplicate jobs stored": len(stored) - len(set(stored) & set(ids)),
            },
        )
    )
    assert len(ids) == REQUESTS
    assert len(set(ids)) == REQUESTS
    assert sorted(stored) == sorted(ids)
