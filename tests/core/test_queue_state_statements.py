"""The statements behind the queue-state metrics and GET /v1/queues, against a real database:
the jobs table's size and dead rows come from the catalogue (the API's login role may read
them), and no queue-state statement scans the history, here on a table of mostly finished
jobs. benchmarks/queue_stats.py times the same statements on 10 million rows."""

import re
from collections.abc import AsyncIterator

import asyncpg
import pytest

from core.test_database_roles import API_ROLE, RoleUrl, fx_role_url
from helpers import eventually
from queue_core.db import create_pool
from queue_core.fleet import Q_LIVE_WORKERS, Q_QUEUE_STATES, WORKER_GONE_AFTER_S
from queue_core.jobs import JobsTableStats
from queue_core.queue import Q_JOBS_TABLE_STATS, Q_OLDEST_TRANSACTION_AGE, Q_QUEUE_STATS, Queue
from queue_core.retention import Q_OLDEST_FINISHED
from queue_core.schedules import Q_STATES as Q_SCHEDULE_STATES
from queue_core.sql import Statement

__all__ = ["fx_role_url"]

FINISHED = 20_000
PENDING = 30
RUNNING = 3

# (statement, its values by name) as the API and the worker bind them.
QUEUE_STATE_STATEMENTS: dict[str, tuple[Statement, dict[str, object]]] = {
    "queue_stats": (Q_QUEUE_STATS, {}),
    "oldest_transaction_age": (Q_OLDEST_TRANSACTION_AGE, {}),
    "jobs_table_stats": (Q_JOBS_TABLE_STATS, {}),
    "queue_states": (Q_QUEUE_STATES, {}),
    "live_workers": (Q_LIVE_WORKERS, {"gone_after_s": WORKER_GONE_AFTER_S}),
    "oldest_finished": (Q_OLDEST_FINISHED, {}),
    "schedule_states": (Q_SCHEDULE_STATES, {"names": ["report"]}),
}

# Finished jobs first (the history), then the live backlog, as a long-lived table has them.
FILL = """
WITH n AS (SELECT $1::int AS finished, $2::int AS pending, $3::int AS running)
INSERT INTO jobs (id, type, payload, status, attempts, queue, created_at, lease_owner,
                  lease_expires_at, started_at, finished_at)
SELECT gen_random_uuid(), 'noop', '{}',
       CASE WHEN i <= finished THEN 'completed'
            WHEN i <= finished + pending THEN 'pending'
            ELSE 'running' END,
       1, 'q' || (i % 3), now() - interval '1 day' + i * interval '1 millisecond',
       CASE WHEN i > finished + pending THEN 'test:1' END,
       CASE WHEN i > finished + pending THEN now() + interval '1 minute' END,
       CASE WHEN i <= finished OR i > finished + pending THEN now() END,
       CASE WHEN i <= finished THEN now() END
FROM n, generate_series(1, finished + pending + running) AS i
"""


@pytest.fixture(name="api_pool")
async def fx_api_pool(role_url: RoleUrl) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(await role_url(API_ROLE))
    yield pool
    await pool.close()


async def _stats(queue: Queue) -> JobsTableStats:
    stats = await queue.jobs_table_stats()
    assert stats is not None
    return stats


async def test_jobs_table_stats_report_size_dead_rows_and_vacuum_to_the_api_role(
    pool: asyncpg.Pool, api_pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        await conn.execute(FILL, 5000, 0, 0)
        await conn.execute("DELETE FROM jobs WHERE id IN (SELECT id FROM jobs LIMIT 1000)")
        # Statistics reach the shared counters at the session's next report, at most once a
        # second unless forced.
        await conn.execute("SELECT pg_stat_force_next_flush()")
        await conn.execute("SELECT 1")
    queue = Queue(api_pool)

    async def deletes_counted() -> bool:
        return (await _stats(queue)).dead_tuples >= 1000

    await eventually(deletes_counted, timeout_s=10)
    before = await _stats(queue)
    assert before.heap_bytes >= 8192 * 10
    assert before.index_bytes > 0
    assert before.toast_bytes >= 0
    sizes = await pool.fetchrow(
        "SELECT pg_relation_size('jobs') AS heap, pg_indexes_size('jobs') AS indexes"
    )
    assert sizes is not None
    assert (before.heap_bytes, before.index_bytes) == (sizes["heap"], sizes["indexes"])

    await pool.execute("VACUUM ANALYZE jobs")

    async def vacuum_seen() -> bool:
        stats = await _stats(queue)
        return stats.vacuum_age_s is not None and stats.dead_tuples == 0

    await eventually(vacuum_seen, timeout_s=10)
    after = await _stats(queue)
    assert after.vacuum_age_s is not None
    assert 0 <= after.vacuum_age_s < 3600
    assert after.analyze_age_s is not None
    assert 0 <= after.analyze_age_s < 3600
    assert after.live_tuples == 4000


def _pages_touched(plan: str) -> int:
    """Shared buffers hit or read by the whole statement: its top node's Buffers line (the
    first one before the planner's own; a statement that touches none has none)."""
    execution = plan.split("\nPlanning:", maxsplit=1)[0]
    match = re.search(r"Buffers: shared((?: (?:hit|read)=\d+)+)", execution)
    return 0 if match is None else sum(int(n) for n in re.findall(r"=(\d+)", match.group(1)))


async def test_no_queue_state_statement_scans_the_history(pool: asyncpg.Pool) -> None:
    await pool.execute(FILL, FINISHED, PENDING, RUNNING)
    await pool.execute("VACUUM ANALYZE jobs")
    pages: int = await pool.fetchval("SELECT relpages FROM pg_class WHERE oid = 'jobs'::regclass")
    assert pages > 100, "the history must be big enough for a scan of it to show"
    seen: dict[str, int] = {}
    async with pool.acquire() as conn:
        for name, (statement, values) in QUEUE_STATE_STATEMENTS.items():
            rows = await conn.fetch(
                "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement.text, *statement.args(**values)
            )
            plan = "\n".join(r[0] for r in rows)
            assert "Seq Scan on jobs" not in plan, f"{name}:\n{plan}"
            # Every page it touches holds live jobs, index entries or catalogue rows: far
            # fewer than the history's pages.
            touched = _pages_touched(plan)
            assert touched < pages // 4, f"{name}: {touched} of {pages} pages\n{plan}"
            seen[name] = touched
    # queue_stats reads the pending and running jobs' pages: proof that the count is real.
    assert seen["queue_stats"] > 0, seen


async def test_jobs_table_stats_never_reads_a_row_of_jobs(pool: asyncpg.Pool) -> None:
    await pool.execute(FILL, 2000, 0, 0)
    rows = await pool.fetch("EXPLAIN (COSTS OFF) " + Q_JOBS_TABLE_STATS.text)
    plan = "\n".join(r[0] for r in rows)
    assert " on jobs" not in plan, plan
