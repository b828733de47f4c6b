"""PgQueuer 1.6, measured the way benchmarks/bench.py measures our queue.

Run with any Python: the script re-executes itself in the peers' virtualenv (created on
demand, see peers_venv.py). Each command prints one JSON object on stdout and wants a
database of its own, freshly set up.

  bench_pgqueuer.py setup          --dsn DSN
  bench_pgqueuer.py enqueue-single --dsn DSN --jobs 20000 --concurrency 64
  bench_pgqueuer.py enqueue-bulk   --dsn DSN --jobs 100000 --batch 1000
  bench_pgqueuer.py process        --dsn DSN --jobs 100000 --procs 2 --batch 1000
  bench_pgqueuer.py latency        --dsn DSN --jobs 200 --interval-ms 20
  bench_pgqueuer.py sweep          --dsn ADMIN_DSN --procs 1,2 --batch 10,100,300,1000
  bench_pgqueuer.py enqueue-sequential --dsn DSN --jobs 2000
  bench_pgqueuer.py mixed          --dsn DSN --seconds 30 --concurrency 64 --procs 2

What each measures, and how:

setup
    ``Queries.install()`` (what ``pgq install`` runs: durable tables, PgQueuer's default),
    then PgQueuer's recommended autovacuum settings for its tables (``pgq autovac``), unless
    ``--no-autovac``.
enqueue-single
    ``Queries.enqueue("noop", payload)``, one job per call, from ``--concurrency`` coroutines
    in this process, each with its own asyncpg connection (as many separate clients). Each
    client enqueues once before the clock starts (warm-up, not counted). Reports jobs/s over
    the wall time and p50/p99 of the per-call latency.
enqueue-bulk
    ``Queries.enqueue([...], [...], [...])`` with ``--batch`` jobs a call (one INSERT of
    arrays), from ``--clients`` callers (default 1), each with its own connection.
process
    Enqueues ``--jobs`` no-op jobs in bulk and ANALYZEs the tables (not timed; without the
    ANALYZE, ``--no-analyze``, the planner sees an empty table and the first seconds run up
    to 4x slower until autovacuum's analyze comes by). Then starts ``--procs`` worker
    processes, each the real ``pgq run`` CLI (on uvloop, as PgQueuer's CLI runs) on
    :func:`create_pgqueuer`, an ``async def`` no-op entrypoint, with ``--batch-size`` =
    ``--batch`` and, when ``--concurrency`` is above 0, ``--max-concurrent-tasks`` =
    ``--concurrency`` (0: no cap, PgQueuer's default; PgQueuer wants a cap of at least twice
    the batch). The clock runs from the first acknowledgement to the last, read from
    ``pgqueuer_log.created`` (PostgreSQL's clock); jobs/s counts the jobs acknowledged after
    the first acknowledgement. Start-up and PostgreSQL's and the workers' CPU time per job
    are reported apart.
latency
    One idle ``pgq run`` worker (batch 10, PgQueuer's default). After five warm-up jobs,
    ``--jobs`` jobs are enqueued one at a time, ``--interval-ms`` apart, each carrying the
    time.time() at which its enqueue was issued; the handler subtracts it from its own
    time.time() on entry. Reports p50/p95/p99 in ms. Wake-up is PgQueuer's LISTEN/NOTIFY.
enqueue-sequential
    A lone caller: ``Queries.enqueue("noop", payload)`` ``--jobs`` times one after another on
    one asyncpg connection (after 20 untimed calls); p50/p99 of the call in ms.
mixed
    Producers and workers at once, for ``--seconds``: ``--procs`` ``pgq run`` workers
    (``--batch`` their batch size), ``--concurrency`` coroutines each enqueueing one job a call
    on its own connection in a closed loop, and one caller enqueueing ``--batch-jobs`` jobs in
    one call every ``--batch-interval-ms``. The workers are warmed up first (a few jobs, not
    counted). Then, once every job is done: jobs/s completed within the producing window, and
    enqueue-to-start and enqueue-to-completed p50/p99 from ``pgqueuer_log`` (its ``queued``,
    ``picked`` and ``successful`` records of each job: PostgreSQL's clock), with
    ``percentile_cont``, as benchmarks/bench.py reads our jobs table.
sweep
    ``process`` at every combination of ``--procs``, ``--batch``, ``--concurrency`` and
    ``--driver`` (``--repeat`` times each), each in a fresh database created next to
    ``--dsn`` and dropped after; reports every run and the best for each process count.
"""

# mypy: allow-untyped-decorators

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import peers_venv  # type: ignore[import-not-found]

    peers_venv.reexec_in_venv()

import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import dataclass
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import asyncpg
import peers_common as common  # type: ignore[import-not-found]
from pgqueuer import Job, PgQueuer, Queries  # type: ignore[import-not-found]
from pgqueuer.db import AsyncpgDriver  # type: ignore[import-not-found]

if TYPE_CHECKING:
    import argparse
    from collections.abc import AsyncIterator

PEER = "pgqueuer"
SCRIPT = Path(__file__).resolve()
FILL_CHUNK = 5000
COUNT_ANY = "SELECT (SELECT count(*) FROM pgqueuer) + (SELECT count(*) FROM pgqueuer_log)"
# A finished job leaves the pgqueuer table (its record goes to pgqueuer_log).
LIVE = "SELECT EXISTS (SELECT FROM pgqueuer)"
COUNT_DONE = "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'"
DONE_INSTANTS = "SELECT created AS at FROM pgqueuer_log WHERE status = 'successful'"


def describe() -> dict[str, Any]:
    return {"peer": PEER, "version": version("pgqueuer")}


# -- the worker: `pgq run bench_pgqueuer:create_pgqueuer -- DSN [DRIVER POOL_SIZE]` --------


@contextlib.asynccontextmanager
async def create_pgqueuer(args: list[str]) -> AsyncIterator[PgQueuer]:
    """The factory ``pgq run`` calls in each worker process. ``args`` (after ``--`` on its
    command line): the DSN, then the driver, ``apg`` (one asyncpg connection, as PgQueuer's
    examples do) or ``apgpool`` (an asyncpg pool), then the pool's size."""
    common.worker_safeguards()
    dsn, driver, pool_size = (*args, "apg", "10")[:3]
    pool: asyncpg.Pool | None = None
    conn: asyncpg.Connection | None = None
    if driver == "apgpool":
        pool = await asyncpg.create_pool(dsn, min_size=2, max_size=int(pool_size))
        pgq = PgQueuer.from_asyncpg_pool(pool)
    else:
        conn = await asyncpg.connect(dsn)
        pgq = PgQueuer.from_asyncpg_connection(conn)

    @pgq.entrypoint("noop")
    async def noop(_job: Job) -> None:
        """The no-op job of the throughput measurement."""

    @pgq.entrypoint("stamp")
    async def stamp(job: Job) -> None:
        """The latency job: its payload carries its number and its enqueue's time.time()."""
        started = time.time()
        body = json.loads(job.payload or b"{}")
        common.record_latency(int(body["i"]), float(body["t"]), started)

    try:
        yield pgq
    finally:
        if pool is not None:
            await pool.close()
        if conn is not None:
            await conn.close()


@dataclass(frozen=True)
class WorkerConfig:
    """How each ``pgq run`` worker is configured."""

    batch: int = 100
    concurrency: int = 0  # --max-concurrent-tasks; 0 = no cap
    driver: str = "apg"
    pool_size: int = 10

    def argv(self, dsn: str) -> list[str]:
        cap = ["--max-concurrent-tasks", str(self.concurrency)] if self.concurrency else []
        return [
            str(common.VENV_BIN / "pgq"),
            "run",
            "bench_pgqueuer:create_pgqueuer",
            f"--batch-size={self.batch}",
            *cap,
            "--log-level=WARNING",  # as our worker runs in the benchmark: no line per job
            "--",
            dsn,
            self.driver,
            str(self.pool_size),
        ]


# -- the client side -----------------------------------------------------------------------


async def setup(dsn: str, *, autovac: bool) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))
        await queries.install()
        if autovac:
            await queries.optimize_autovacuum()
    finally:
        await conn.close()
    return {**describe(), "workload": "setup", "autovac": autovac}


async def fill(dsn: str, jobs: int, *, analyze: bool) -> float:
    """Enqueue ``jobs`` no-op jobs in bulk, then ANALYZE unless told not to; returns the
    enqueue's jobs/s (reported, not the benchmark)."""
    conn = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))
        started = time.perf_counter()
        for start in range(0, jobs, FILL_CHUNK):
            n = min(FILL_CHUNK, jobs - start)
            await queries.enqueue(["noop"] * n, [common.PAYLOAD_BYTES] * n, [0] * n)
        rate = jobs / (time.perf_counter() - started)
        if analyze:
            await conn.execute("ANALYZE pgqueuer; ANALYZE pgqueuer_log")
    finally:
        await conn.close()
    return rate


async def enqueue_single(dsn: str, jobs: int, concurrency: int) -> dict[str, Any]:
    conns = [await asyncpg.connect(dsn) for _ in range(concurrency)]
    try:
        clients = [Queries(AsyncpgDriver(c)) for c in conns]
        await asyncio.gather(*(q.enqueue("noop", common.PAYLOAD_BYTES) for q in clients))
        cpu = await common.CpuMeter.for_server(conns[0])
        cpu.start()

        async def enqueue(client: int) -> None:
            await clients[client].enqueue("noop", common.PAYLOAD_BYTES)

        result = await common.concurrent_enqueues(concurrency, jobs, enqueue)
        cpu.stop_db(jobs)
    finally:
        await asyncio.gather(*(c.close() for c in conns))
    return {
        **describe(),
        "workload": "enqueue-single",
        "jobs": jobs,
        "concurrency": concurrency,
        **result,
        **cpu.per_job,
        "api": "Queries.enqueue(entrypoint, payload); one asyncpg connection per client",
    }


async def enqueue_bulk(dsn: str, jobs: int, batch: int, clients: int) -> dict[str, Any]:
    conns = [await asyncpg.connect(dsn) for _ in range(clients)]
    try:
        queries = [Queries(AsyncpgDriver(c)) for c in conns]
        entrypoints, payloads = ["noop"] * batch, [common.PAYLOAD_BYTES] * batch
        priorities = [0] * batch
        await asyncio.gather(*(q.enqueue(["noop"], payloads[:1], [0]) for q in queries))
        cpu = await common.CpuMeter.for_server(conns[0])
        cpu.start()

        async def enqueue(client: int, n: int) -> None:
            await queries[client].enqueue(entrypoints[:n], payloads[:n], priorities[:n])

        result = await common.bulk_enqueues(clients, jobs, batch, enqueue)
        cpu.stop_db(jobs)
    finally:
        await asyncio.gather(*(c.close() for c in conns))
    return {
        **describe(),
        "workload": "enqueue-bulk",
        "jobs": jobs,
        "batch": batch,
        "clients": clients,
        **result,
        **cpu.per_job,
        "api": "Queries.enqueue(entrypoints, payloads, priorities), one statement a call",
    }


async def process(run: common.ProcessRun, worker: WorkerConfig) -> dict[str, Any]:
    if 0 < worker.concurrency < 2 * worker.batch:
        raise SystemExit("PgQueuer wants --concurrency (max_concurrent_tasks) >= 2 x --batch")
    await common.ensure_empty(run.dsn, COUNT_ANY)
    fill_rate = await fill(run.dsn, run.jobs, analyze=run.analyze)
    argv = worker.argv(run.dsn)
    spec = common.DrainSpec(
        run.jobs, run.procs, argv, {}, LIVE, COUNT_DONE, DONE_INSTANTS, run.timeout_s
    )
    measured = await common.drain(run.dsn, spec)
    return {
        **describe(),
        "workload": "process",
        "jobs": run.jobs,
        "procs": run.procs,
        "batch": worker.batch,
        "concurrency": worker.concurrency,
        "driver": worker.driver,
        **({"pool_size": worker.pool_size} if worker.driver == "apgpool" else {}),
        **measured,
        "fill_jobs_per_s": common.rounded(fill_rate, 1),
        "analyzed_after_fill": run.analyze,
        "worker": " ".join(argv[1 : argv.index("--")]),
    }


async def latency(dsn: str, jobs: int, interval_ms: float, batch: int) -> dict[str, Any]:
    await common.ensure_empty(dsn, COUNT_ANY)
    conn = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))

        async def enqueue(i: int, issued_at: float) -> None:
            await queries.enqueue("stamp", json.dumps({"i": i, "t": issued_at}).encode())

        spec = common.LatencySpec(
            jobs, interval_ms / 1000, WorkerConfig(batch=batch).argv(dsn), {}, enqueue
        )
        result = await common.latency(spec)
    finally:
        await conn.close()
    return {**describe(), "workload": "latency", "batch": batch, **result}


async def enqueue_sequential(dsn: str, calls: int) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))
        result = await common.sequential_enqueues(
            calls, lambda: queries.enqueue("noop", common.PAYLOAD_BYTES)
        )
    finally:
        await conn.close()
    return {
        **describe(),
        "workload": "enqueue-sequential",
        **result,
        "api": "Queries.enqueue(entrypoint, payload), one call at a time, one connection",
    }


# Every job created since $1, by its log records: queued (the enqueue's transaction time),
# first picked, successful; all PostgreSQL's clock. $2: the end of the producing window.
MIXED_FIGURES = """
WITH queued AS (
    SELECT job_id, created FROM pgqueuer_log WHERE status = 'queued' AND created >= $1
), picked AS (
    SELECT job_id, min(created) AS at FROM pgqueuer_log WHERE status = 'picked' GROUP BY job_id
), done AS (
    SELECT job_id, created AS at FROM pgqueuer_log WHERE status = 'successful'
), timed AS (
    SELECT extract(epoch FROM p.at - q.created) * 1000 AS to_start,
           extract(epoch FROM d.at - q.created) * 1000 AS to_done,
           d.at AS done_at
    FROM queued AS q JOIN picked AS p USING (job_id) JOIN done AS d USING (job_id)
)
SELECT (SELECT count(*) FROM queued) AS enqueued,
       count(*) AS completed,
       count(*) FILTER (WHERE done_at <= $2) AS completed_in_window,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY to_start) AS start_p50_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY to_start) AS start_p99_ms,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY to_done) AS done_p50_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY to_done) AS done_p99_ms
FROM timed
"""


@dataclass(frozen=True)
class MixedRun:
    dsn: str
    seconds: float
    concurrency: int
    procs: int
    batch_jobs: int
    batch_interval_s: float
    worker: WorkerConfig


async def _drained(conn: asyncpg.Connection, workers: common.Workers, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while await conn.fetchval(LIVE):
        if time.monotonic() > deadline:
            raise RuntimeError(f"jobs still queued {timeout_s:.0f} s after the producers")
        workers.check_alive()
        await asyncio.sleep(common.POLL_S)


async def mixed(run: MixedRun) -> dict[str, Any]:
    await common.ensure_empty(run.dsn, COUNT_ANY)
    conns = [await asyncpg.connect(run.dsn) for _ in range(run.concurrency + 2)]
    admin, batch_conn, singles = conns[0], conns[1], conns[2:]
    try:
        clients = [Queries(AsyncpgDriver(c)) for c in singles]
        batcher = Queries(AsyncpgDriver(batch_conn))
        n = run.batch_jobs
        entrypoints, payloads, priorities = ["noop"] * n, [common.PAYLOAD_BYTES] * n, [0] * n
        lifetime = run.seconds + 300
        with common.worker_processes(run.worker.argv(run.dsn), run.procs, {}, lifetime) as workers:
            # Warm-up, not counted: every client's first call, and the workers' first jobs.
            await asyncio.gather(*(q.enqueue("noop", common.PAYLOAD_BYTES) for q in clients))
            await _drained(admin, workers, 60)
            await admin.execute("CHECKPOINT")
            since = await admin.fetchval("SELECT now()")
            spec = common.MixedSpec(
                seconds=run.seconds,
                clients=run.concurrency,
                single=lambda c: clients[c].enqueue("noop", common.PAYLOAD_BYTES),
                batch_jobs=n,
                interval_s=run.batch_interval_s,
                batch=lambda: batcher.enqueue(entrypoints, payloads, priorities),
            )
            produced = await common.mixed_producers(spec)
            until = await admin.fetchval("SELECT now()")
            # A job leaves the pgqueuer table in the statement that logs its success.
            await _drained(admin, workers, 300)
        row = await admin.fetchrow(MIXED_FIGURES, since, until)
    finally:
        await asyncio.gather(*(c.close() for c in conns))
    if row is None:  # an aggregate always returns its row
        raise RuntimeError("no figures read back")
    window_s = (until - since).total_seconds()
    return {
        **describe(),
        "workload": "mixed",
        "seconds": common.rounded(window_s),
        "procs": run.procs,
        "batch": run.worker.batch,
        "concurrency": run.concurrency,
        "batch_jobs": n,
        "batch_interval_ms": run.batch_interval_s * 1000,
        **produced,
        "enqueued": row["enqueued"],
        "completed": row["completed"],
        "completed_jobs_per_s": common.rounded(row["completed_in_window"] / window_s, 1),
        **{
            key: common.rounded(float(row[key]))
            for key in ("start_p50_ms", "start_p99_ms", "done_p50_ms", "done_p99_ms")
        },
        "api": "Queries.enqueue, single and arrays; workers: pgq run",
    }


async def sweep(args: argparse.Namespace) -> dict[str, Any]:
    grid: list[dict[str, int | str]] = [
        {"procs": p, "batch": b, "concurrency": c, "driver": d}
        for p, b, c, d in itertools.product(
            args.procs, args.batch, args.concurrency, args.driver.split(",")
        )
        if not 0 < c < 2 * b
    ]
    spec = common.SweepSpec(SCRIPT, PEER, args.dsn, grid, args.jobs, args.run_timeout, args.repeat)
    return {
        **describe(),
        **await common.sweep(spec),
        "skipped": "settings with 0 < concurrency < 2 x batch (PgQueuer refuses them)",
    }


def main() -> None:
    parser, cmds = common.build_parser(
        __doc__ or "",
        {
            "enqueue-sequential": ("a lone caller's enqueues, one after another", 300),
            "mixed": ("producers and workers at once", 900),
        },
    )
    cmds["enqueue-sequential"].add_argument("--jobs", type=int, default=2000)
    p = cmds["mixed"]
    p.add_argument("--seconds", type=float, default=30.0, help="how long the producers run")
    p.add_argument("--concurrency", type=int, default=64, help="single-enqueue coroutines")
    p.add_argument("--procs", type=int, default=2, help="worker processes")
    p.add_argument("--batch", type=int, default=100, help="pgq run --batch-size")
    p.add_argument("--batch-jobs", type=int, default=100, help="jobs per batch enqueue")
    p.add_argument("--batch-interval-ms", type=float, default=50.0, help="between batches")
    cmds["setup"].add_argument(
        "--no-autovac",
        dest="autovac",
        action="store_false",
        help="skip PgQueuer's recommended autovacuum settings (`pgq autovac`)",
    )
    p = cmds["process"]
    p.add_argument("--batch", type=int, default=100, help="pgq run --batch-size (default 100)")
    p.add_argument(
        "--concurrency", type=int, default=0, help="pgq run --max-concurrent-tasks; 0 = no cap"
    )
    p.add_argument("--driver", choices=("apg", "apgpool"), default="apg")
    p.add_argument("--pool-size", type=int, default=10, help="with --driver apgpool")
    cmds["latency"].add_argument("--batch", type=int, default=10, help="pgq run --batch-size")
    p = cmds["sweep"]
    p.add_argument(
        "--batch", type=common.int_list, default=[10, 100, 300, 1000], help="e.g. 10,100"
    )
    p.add_argument("--concurrency", type=common.int_list, default=[0], help="0 = no cap")
    p.add_argument("--driver", default="apg", help="apg, apgpool or apg,apgpool")
    args = parser.parse_args()

    if args.command == "setup":
        work = setup(args.dsn, autovac=args.autovac)
    elif args.command == "enqueue-single":
        work = enqueue_single(args.dsn, args.jobs, args.concurrency)
    elif args.command == "enqueue-bulk":
        work = enqueue_bulk(args.dsn, args.jobs, args.batch, args.clients)
    elif args.command == "process":
        worker = WorkerConfig(args.batch, args.concurrency, args.driver, args.pool_size)
        work = process(common.ProcessRun.from_args(args), worker)
    elif args.command == "latency":
        work = latency(args.dsn, args.jobs, args.interval_ms, args.batch)
    elif args.command == "enqueue-sequential":
        work = enqueue_sequential(args.dsn, args.jobs)
    elif args.command == "mixed":
        work = mixed(
            MixedRun(
                args.dsn,
                args.seconds,
                args.concurrency,
                args.procs,
                args.batch_jobs,
                args.batch_interval_ms / 1000,
                WorkerConfig(batch=args.batch),
            )
        )
    else:
        work = sweep(args)
    result = common.run(work, timeout_s=args.timeout, loop=args.loop)
    common.emit({**result, "loop": args.loop})


if __name__ == "__main__":
    main()
