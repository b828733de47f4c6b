"""Listing benchmark: GET /v1/jobs's statement on a big jobs table, first and deep pages.

Fills a fresh migrated database (every index of the migrations, nothing more) with ``--rows``
jobs over 30 days, a production-like mix:

  * the newest 0.5 % pending (the backlog) and 200 of them running;
  * the rest 95 % completed, 3.5 % failed, 1.5 % cancelled;
  * 50 types, Zipf-like (type_00 is about a quarter of the jobs, type_49 about 0.5 %), 10 queues.

Then, for each filter, times ``JobListing.page`` (the statement with its plan setting, the
round trips of its read-only transaction, and decoding) as the API runs it:

  first   the first page of 100, ``--repeats`` times
  walk    following next_cursor page after page, ``--pages`` pages (each page timed)
  deep    the page after a cursor half-way down the table (15 days back), ``--repeats`` times

and prints p50/p99 in milliseconds per filter, plus each filter's plan (EXPLAIN ANALYZE of
the first page) with ``--explain``. Figures are reported, never asserted. Not run in CI.

    make bench-listing                                  # 10,000,000 rows: about 10 minutes
    uv run python benchmarks/listing_bench.py --rows 200000 --repeats 5 --pages 5   # a minute
"""

import argparse
import asyncio
import statistics
import time
import uuid  # noqa: TC003 - used at run time in annotations of locals
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from queue_core.db import create_pool
from queue_core.listing import Q_LIST_JOBS, SCAN_BUDGET, JobFilter, JobListing, decode_cursor
from queue_core.migrate import upgrade
from queue_core.states import JobStatus
from queue_devtools.pgcluster import temporary_cluster

DAYS = 30
CHUNK = 1_000_000

# One chunk of rows g in [$1, $2) of $3, created evenly over the 30 days before $4 (the newest
# last). The UUIDv7 id carries created_at's milliseconds (spelled out: uuidv7() is PostgreSQL
# 18's), and the id's low bits come from the row number so ids are unique within a millisecond.
FILL_SQL = """
WITH rows AS (
    SELECT g,
           $4::timestamptz - make_interval(days => 30)
               + (g::float8 / $3) * make_interval(days => 30) AS at,
           (hashint8(g) & 2147483647) % 1000 AS roll,
           (hashint8(g * 7919) & 2147483647) % 100000 AS skew
    FROM generate_series($1::bigint, $2::bigint - 1) AS g
)
INSERT INTO jobs (id, type, payload, queue, priority, status, attempts, max_attempts,
                  error_message, created_at, updated_at, started_at, finished_at,
                  lease_owner, lease_expires_at)
SELECT encode(
           set_bit(set_bit(overlay(overlay(uuid_send(gen_random_uuid())
               PLACING substring(int8send((extract(epoch FROM at) * 1000)::int8) FROM 3)
               FROM 1 FOR 6) PLACING int8send(g) FROM 9 FOR 8), 52, 1), 53, 1),
           'hex')::uuid,
       -- Zipf-like: floor(50 * (skew/100000)^3) puts a quarter of the rows on type_00
       'type_' || lpad((floor(50 * power(skew / 100000.0, 3)))::int::text, 2, '0'),
       '{"n": 1}'::jsonb,
       'q' || (g % 10),
       0,
       status,
       CASE WHEN status = 'pending' THEN 0 ELSE 1 END,
       3,
       CASE WHEN status IN ('failed', 'cancelled') THEN 'RuntimeError: it broke' END,
       at, at,
       CASE WHEN status <> 'pending' THEN at END,
       CASE WHEN status IN ('completed', 'failed', 'cancelled')
            THEN at + interval '2 seconds' END,
       CASE WHEN status = 'running' THEN 'bench:0' END,
       CASE WHEN status = 'running' THEN now() + interval '1 day' END
FROM (
    SELECT g, at, skew,
           CASE
               WHEN g >= $3 - 200 THEN 'running'
               WHEN g >= $3 - $3 / 200 THEN 'pending'
               WHEN roll < 35 THEN 'failed'
               WHEN roll < 50 THEN 'cancelled'
               ELSE 'completed'
           END AS status
    FROM rows
) AS r
"""


@dataclass(frozen=True)
class Case:
    name: str
    where: JobFilter


def cases(now: datetime) -> list[Case]:
    day = timedelta(days=1)
    return [
        Case("no filter", JobFilter()),
        Case("status=completed", JobFilter(statuses=(JobStatus.COMPLETED,))),
        Case("status=failed", JobFilter(statuses=(JobStatus.FAILED,))),
        Case(
            "status=failed,cancelled", JobFilter(statuses=(JobStatus.FAILED, JobStatus.CANCELLED))
        ),
        Case("status=pending", JobFilter(statuses=(JobStatus.PENDING,))),
        Case("status=running", JobFilter(statuses=(JobStatus.RUNNING,))),
        Case("type=type_00 (25%)", JobFilter(types=("type_00",))),
        Case("type=type_25 (1.5%)", JobFilter(types=("type_25",))),
        Case("type=type_49 (0.5%)", JobFilter(types=("type_49",))),
        Case("queue=q3", JobFilter(queues=("q3",))),
        Case("queue in 3 (key)", JobFilter(queues=("q1", "q4", "q7"))),
        Case(
            "created: 1 day, 10 days ago",
            JobFilter(created_after=now - 11 * day, created_before=now - 10 * day),
        ),
        Case("created_before 20 days ago", JobFilter(created_before=now - 20 * day)),
        Case("finished_after 1 day ago", JobFilter(finished_after=now - day)),
        Case("finished_before 20 days ago", JobFilter(finished_before=now - 20 * day)),
        Case(
            "failed + type_25 + q3",
            JobFilter(statuses=(JobStatus.FAILED,), types=("type_25",), queues=("q3",)),
        ),
        Case(
            "failed, last 2 days",
            JobFilter(statuses=(JobStatus.FAILED,), finished_after=now - 2 * day),
        ),
    ]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def fill(url: str, rows: int, now: datetime) -> None:
    conn = await asyncpg.connect(url)
    try:
        for start in range(0, rows, CHUNK):
            t0 = time.perf_counter()
            await conn.execute(FILL_SQL, start, min(start + CHUNK, rows), rows, now)
            print(
                f"  filled {min(start + CHUNK, rows):,} rows ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
        t0 = time.perf_counter()
        # The cluster commits asynchronously (synchronous_commit off): until the WAL is flushed,
        # VACUUM may not set hint bits nor mark a page all-visible, and no scan would be
        # index-only. A production table's old rows are all-visible: so are these, after this.
        await conn.execute("CHECKPOINT")
        await conn.execute("VACUUM ANALYZE jobs")
        print(f"  vacuum analyze ({time.perf_counter() - t0:.0f} s)", flush=True)
        counts = await conn.fetch("SELECT status, count(*) FROM jobs GROUP BY 1 ORDER BY 1")
        print("  " + ", ".join(f"{r['status']} {r['count']:,}" for r in counts), flush=True)
    finally:
        await conn.close()


def _literal(value: object) -> str:
    """A bench value as an SQL literal (EXECUTE takes no bind parameters under EXPLAIN)."""
    if value is None:
        return "NULL"
    if isinstance(value, list):
        return "ARRAY[" + ", ".join(_literal(v) for v in value) + "]::text[]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


async def explain(url: str, case: Case) -> str:
    """EXPLAIN ANALYZE of the first page, with the values bound as the API binds them."""
    conn = await asyncpg.connect(url)
    try:
        floor, ceiling = case.where.id_bounds()
        w = case.where
        statuses = None if w.statuses is None else [s.value for s in w.statuses]
        async with conn.transaction():
            await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            await conn.execute(f"PREPARE listing AS {Q_LIST_JOBS.text.rstrip().rstrip(';')}")
            # EXECUTE takes its values in $n order, which args() gives from their names.
            args = Q_LIST_JOBS.args(
                after=None,
                statuses=statuses,
                types=None if w.types is None else list(w.types),
                queues=None if w.queues is None else list(w.queues),
                created_after=w.created_after,
                created_before=w.created_before,
                finished_after=w.finished_after,
                finished_before=w.finished_before,
                id_floor=floor,
                id_ceiling=ceiling,
                limit=101,
                scan_budget=SCAN_BUDGET,
                failed_or_cancelled=statuses is not None
                and set(statuses) <= {"failed", "cancelled"},
            )
            literals = ", ".join(_literal(a) for a in args)
            rows = await conn.fetch(
                f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE listing({literals})"
            )
            await conn.execute("DEALLOCATE listing")
        return "\n".join("      " + r[0] for r in rows)
    finally:
        await conn.close()


async def measure(url: str, now: datetime, repeats: int, pages: int, *, show_plans: bool) -> None:
    pool = await create_pool(url, max_size=1)
    listing = JobListing(pool)
    # A cursor 15 days back: the newest id made before then.
    middle = await pool.fetchval(
        "SELECT id FROM jobs WHERE created_at < $1 ORDER BY id DESC LIMIT 1", now - timedelta(15)
    )
    header = (
        f"{'filter':<30} {'first p50':>9} {'p99':>7}  {'walk p50':>8} {'p99':>7} {'pages':>5}"
        f" {'jobs':>6}  {'deep p50':>8} {'p99':>7}"
    )
    print(f"\nmilliseconds; {repeats} runs each, walk = {pages} pages of 100 by cursor\n")
    print(header)
    print("-" * len(header))
    for case in cases(now):
        first: list[float] = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            await listing.page(case.where)
            first.append((time.perf_counter() - t0) * 1000)
        walk: list[float] = []
        found = 0
        after: uuid.UUID | None = None
        for _ in range(pages):
            t0 = time.perf_counter()
            page = await listing.page(case.where, after=after)
            walk.append((time.perf_counter() - t0) * 1000)
            found += len(page.jobs)
            if page.next_cursor is None:
                break
            after = decode_cursor(page.next_cursor)
        deep: list[float] = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            await listing.page(case.where, after=middle)
            deep.append((time.perf_counter() - t0) * 1000)
        print(
            f"{case.name:<30} {statistics.median(first):>9.2f} {pct(first, 0.99):>7.2f}"
            f"  {statistics.median(walk):>8.2f} {pct(walk, 0.99):>7.2f} {len(walk):>5} {found:>6}"
            f"  {statistics.median(deep):>8.2f} {pct(deep, 0.99):>7.2f}",
            flush=True,
        )
        if show_plans:
            print(await explain(url, case), flush=True)
    await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--explain", action="store_true", help="print each filter's plan")
    parser.add_argument(
        "--database-url", help="an existing, filled database to measure (skips the fill)"
    )
    args = parser.parse_args()
    if args.database_url:
        now = datetime.now(UTC)
        asyncio.run(
            measure(args.database_url, now, args.repeats, args.pages, show_plans=args.explain)
        )
        return
    with temporary_cluster() as cluster:
        url = cluster.url()
        upgrade(url)
        now = datetime.now(UTC)
        print(f"filling {args.rows:,} jobs over {DAYS} days", flush=True)
        asyncio.run(fill(url, args.rows, now))
        asyncio.run(measure(url, now, args.repeats, args.pages, show_plans=args.explain))


if __name__ == "__main__":
    main()
