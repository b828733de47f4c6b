"""Bulk cancel and retry through the clients go on where the API stopped: one request reads at
most MAX_BULK_SCAN jobs and answers a cursor, and jobs further back are reached only by sending
it (queuectl cancel/retry use these methods). The system is this module's own: it fills its
database with more jobs than one request reads."""

import asyncio

import asyncpg

from client.conftest import System
from queue_client import AsyncClient, Client
from queue_core.bulk import MAX_BULK_SCAN

# Below every id gen_random_uuid() draws for the filler but the odd one: the jobs the walk,
# newest id first, meets after the filler.
OLDEST = [f"00000000-0000-7000-8000-00000000000{i}" for i in range(3)]


async def _fill(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO jobs (id, type, payload, status, attempts, started_at, finished_at)"
            " SELECT gen_random_uuid(), 'filler', '{}'::jsonb, 'cancelled', 1, now(), now()"
            " FROM generate_series(1, $1)",
            MAX_BULK_SCAN + 500,
        )
        await conn.execute(
            "INSERT INTO jobs (id, type, payload, queue) SELECT id::uuid, 'target', '{}', 'far'"
            " FROM unnest($1::text[]) AS id",
            OLDEST,
        )
    finally:
        await conn.close()


def test_the_clients_follow_the_cursor_to_jobs_beyond_what_one_request_reads(
    system: System,
) -> None:
    asyncio.run(_fill(system.database_url))

    with Client(system.url, system.key) as client:
        assert client.cancel_jobs(limit=2, type="target") == 2  # two requests: 0, then 2
        assert client.cancel_jobs(limit=10, type="target") == 1

    async def retry() -> int:
        async with AsyncClient(system.url, system.key) as client:
            return await client.retry_jobs(limit=10, type="target")

    assert asyncio.run(retry()) == len(OLDEST)
