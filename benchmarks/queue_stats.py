"""How much the metrics' queue-state query costs on a big table.

Builds a throwaway PostgreSQL, migrates it, fills ``jobs`` with ROWS rows (by default 10
million, of which the newest 30,000 are pending, scheduled or running across three queues and
the rest finished), then
times ``Queue.stats()`` and ``Queue.oldest_transaction_age_s()`` — what the API runs at most
every 5 s for /metrics — and prints the figures, with the plan of the stats query.

    uv run python benchmarks/queue_stats.py            # 10,000,000 rows
    uv run python benchmarks/queue_stats.py --rows 1000000
"""

import argparse
import asyncio
import statistics
import time

import asyncpg

from queue_core.db import create_pool
from queue_core.migrate import upgrade
from queue_core.queue import Q_QUEUE_STATS, Queue
from queue_devtools.pgcluster import temporary_cluster

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
    for start in range(1, rows + 1, batch):
        await pool.execute(FILL, start, min(start + batch - 1, rows), rows - active)
        print(f"  {min(start + batch - 1, rows):>11,} rows", flush=True)
    await pool.execute("VACUUM ANALYZE jobs")


async def measure(url: str, rows: int, active: int, runs: int) -> None:
    pool = await create_pool(url, max_size=2)
    try:
        started = time.perf_counter()
        await fill(pool, rows, active)
        print(f"filled in {time.perf_counter() - started:.0f} s")
        queue = Queue(pool)
        timings: dict[str, list[float]] = {"stats": [], "oldest_transaction": []}
        for _ in range(runs):
            t0 = time.perf_counter()
            stats = await queue.stats()
            t1 = time.perf_counter()
            await queue.oldest_transaction_age_s()
            t2 = time.perf_counter()
            timings["stats"].append((t1 - t0) * 1000)
            timings["oldest_transaction"].append((t2 - t1) * 1000)
        plan = await pool.fetch("EXPLAIN (ANALYZE, BUFFERS) " + Q_QUEUE_STATS)
        table_mb = await pool.fetchval("SELECT pg_total_relation_size('jobs') / 1048576")
    finally:
        await pool.close()
    print("\n".join(r[0] for r in plan))
    print(f"\nrows={rows:,} table+indexes={table_mb} MB runs={runs}")
    for s in stats:
        print(f"  {s}")
    print(f"{'query':<20}{'median ms':>12}{'p95 ms':>10}{'max ms':>10}")
    for name, values in timings.items():
        p95 = statistics.quantiles(values, n=20)[-1]
        print(f"{name:<20}{statistics.median(values):>12.2f}{p95:>10.2f}{max(values):>10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--active", type=int, default=30_000, help="pending + running rows")
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    with temporary_cluster(durable=False) as cluster:
        upgrade(cluster.url())
        asyncio.run(measure(cluster.url(), args.rows, args.active, args.runs))


if __name__ == "__main__":
    main()
