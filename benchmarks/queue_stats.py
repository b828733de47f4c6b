"""What the queue-state statements cost on a big table, and proof that none reads the history.

Every statement that metrics and ``GET /v1/queues`` run on a timer or per request, whatever
the size of the history:

  queue_stats             the API's /metrics (every 5 s at most) and GET /v1/queues
  oldest_transaction_age  the API's /metrics
  jobs_table_stats        the API's /metrics: size on disk, dead rows, last vacuum
  queue_states            GET /v1/queues (paused queues)
  live_workers            GET /v1/queues (workers serving each queue)
  oldest_finished         the worker's retention round (retention lag)
  schedule_states         the worker's scheduler, each turn (schedule lag)

Builds a throwaway PostgreSQL, migrates it, fills ``jobs`` with ROWS rows (by default 10
million, of which the newest 30,000 are pending, scheduled or running across three queues and
the rest finished), then times each statement ``--runs`` times and prints its EXPLAIN
(ANALYZE, BUFFERS). A statement whose plan has a sequential scan of ``jobs``, or that touches
more pages than there are pending and running rows (each may sit on a page of its own) plus
0.1 % of the table, is flagged ``READS HISTORY``. ``--database-url`` measures an
existing, filled database instead (say the one ``benchmarks/listing_bench.py`` fills, so 10
million rows are loaded once for both). Figures are printed, never asserted. Not run in CI.

    uv run python benchmarks/queue_stats.py            # 10,000,000 rows
    uv run python benchmarks/queue_stats.py --rows 1000000
    uv run python benchmarks/queue_stats.py --database-url postgresql://...
"""

import argparse
import asyncio
import re
import statistics
import time
from collections.abc import Sequence

import asyncpg

from queue_core.db import create_pool
from queue_core.fleet import Q_LIVE_WORKERS, Q_QUEUE_STATES, WORKER_GONE_AFTER_S
from queue_core.migrate import upgrade
from queue_core.queue import Q_JOBS_TABLE_STATS, Q_OLDEST_TRANSACTION_AGE, Q_QUEUE_STATS
from queue_core.retention import Q_OLDEST_FINISHED
from queue_core.schedules import Q_STATES as Q_SCHEDULE_STATES
from queue_core.sql import Statement
from queue_devtools.pgcluster import temporary_cluster

# (name, statement, values by name): the values as the services bind them.
STATEMENTS: Sequence[tuple[str, Statement, dict[str, object]]] = (
    ("queue_stats", Q_QUEUE_STATS, {}),
    ("oldest_transaction_age", Q_OLDEST_TRANSACTION_AGE, {}),
    ("jobs_table_stats", Q_JOBS_TABLE_STATS, {}),
    ("queue_states", Q_QUEUE_STATES, {}),
    ("live_workers", Q_LIVE_WORKERS, {"gone_after_s": WORKER_GONE_AFTER_S}),
    ("oldest_finished", Q_OLDEST_FINISHED, {}),
    ("schedule_states", Q_SCHEDULE_STATES, {"names": ["report", "cleanup"]}),
)
# Pages a statement may touch beyond one per pending or running row (index pages, catalogue)
# before it counts as reading the history: this share of the table's pages.
HISTORY_SHARE = 0.001

# A realistic layout: the finished jobs are the old rows, the live backlog is the newest
# ACTIVE rows (a third each due, scheduled, running) spread over three queues.
FILL = """
INSERT INTO jobs (id, type, payload, status, attempts, queue, scheduled_at, created_at,
                  lease_owner, lease_expires_at, started_at, finished_at)
SELECT gen_random_uuid(), 'noop', '{"n": 1}',
       CASE WHEN i <= $3 THEN 'completed' WHEN i % 3 = 0 THEN 'running' ELSE 'pending' END,
       1,
       (ARRAY['default', 'emails', 'reports'])[1 + (i / 3) % 3],
       CASE WHEN i > $3 AND i % 3 = 1 THEN now() + interval '1 hour' END,
       now() - interval '1 day' + (i * interval '1 millisecond'),
       CASE WHEN i > $3 AND i % 3 = 0 THEN 'bench:1:x' END,
       CASE WHEN i > $3 AND i % 3 = 0 THEN now() + interval '30 seconds' END,
       CASE WHEN i <= $3 OR i % 3 = 0 THEN now() END,
       CASE WHEN i <= $3 THEN now() END
FROM generate_series($1::bigint, $2::bigint) AS i
"""


async def fill(pool: asyncpg.Pool, rows: int, active: int, batch: int = 1_000_000) -> None:
    started = time.perf_counter()
    for start in range(1, rows + 1, batch):
        await pool.execute(FILL, start, min(start + batch - 1, rows), rows - active)
        print(f"  {min(start + batch - 1, rows):>11,} rows", flush=True)
    await pool.execute("VACUUM ANALYZE jobs")
    print(f"filled in {time.perf_counter() - started:.0f} s")


def _pages_read(plan: str) -> int:
    """Shared buffers hit and read by the whole statement (the top node's Buffers line; the
    planner's own, after "Planning:", are not the statement's)."""
    execution = plan.split("\nPlanning:", maxsplit=1)[0]
    match = re.search(r"Buffers: shared((?: \w+=\d+)+)", execution)
    if match is None:
        return 0
    counts = re.findall(r"(\w+)=(\d+)", match.group(1))
    return sum(int(n) for key, n in counts if key in {"hit", "read"})


async def measure(url: str, runs: int) -> None:
    pool = await create_pool(url, max_size=1)
    try:
        table_pages: int = await pool.fetchval(
            "SELECT greatest(relpages, 1) FROM pg_class WHERE oid = 'jobs'::regclass"
        )
        summary = await pool.fetchrow(
            "SELECT count(*) FILTER (WHERE status IN ('pending', 'running')) AS active,"
            " pg_total_relation_size('jobs') / 1048576 AS mb, count(*) AS rows FROM jobs"
        )
        assert summary is not None  # noqa: S101 - an aggregate without GROUP BY: one row
        print(
            f"\njobs: {summary['rows']:,} rows, {summary['active']:,} pending or running, "
            f"{summary['mb']:,} MB with indexes, {table_pages:,} heap pages"
        )
        figures = []
        for name, statement, values in STATEMENTS:
            await statement.fetch(pool, **values)  # warm: its plan cached, as in the services
            timings = []
            for _ in range(runs):
                t0 = time.perf_counter()
                await statement.fetch(pool, **values)
                timings.append((time.perf_counter() - t0) * 1000)
            rows = await pool.fetch(
                "EXPLAIN (ANALYZE, BUFFERS) " + statement.text, *statement.args(**values)
            )
            plan = "\n".join(r[0] for r in rows)
            pages = _pages_read(plan)
            allowed = summary["active"] + HISTORY_SHARE * table_pages
            reads_history = "Seq Scan on jobs" in plan or pages > allowed
            print(f"\n-- {name}\n{plan}")
            figures.append((name, timings, pages, reads_history))
    finally:
        await pool.close()
    print(f"\nmilliseconds over {runs} runs; pages: shared buffers the statement touched")
    print(f"{'statement':<24}{'median':>8}{'p95':>8}{'max':>8}{'pages':>8}  history")
    for name, timings, pages, reads_history in figures:
        p95 = statistics.quantiles(timings, n=20, method="inclusive")[-1]
        print(
            f"{name:<24}{statistics.median(timings):>8.2f}{p95:>8.2f}{max(timings):>8.2f}"
            f"{pages:>8}  {'READS HISTORY' if reads_history else 'not read'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--active", type=int, default=30_000, help="pending + running rows")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument(
        "--database-url", help="an existing, filled database to measure (skips the fill)"
    )
    args = parser.parse_args()
    if args.database_url:
        asyncio.run(measure(args.database_url, args.runs))
        return
    with temporary_cluster(durable=False) as cluster:
        upgrade(cluster.url())

        async def fill_and_measure() -> None:
            pool = await create_pool(cluster.url(), max_size=1)
            try:
                await fill(pool, args.rows, args.active)
            finally:
                await pool.close()
            await measure(cluster.url(), args.runs)

        asyncio.run(fill_and_measure())


if __name__ == "__main__":
    main()
