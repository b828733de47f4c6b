"""Procrastinate 3.10, measured the way benchmarks/bench.py measures our queue.

Run with any Python: the script re-executes itself in the peers' virtualenv (created on
demand, see peers_venv.py). Each command prints one JSON object on stdout and wants a
database of its own, freshly set up. The app and its tasks are in procrastinate_app.py.

  bench_procrastinate.py setup          --dsn DSN
  bench_procrastinate.py enqueue-single --dsn DSN --jobs 10000 --concurrency 64
  bench_procrastinate.py enqueue-bulk   --dsn DSN --jobs 100000 --batch 1000
  bench_procrastinate.py process        --dsn DSN --jobs 20000 --procs 2 --concurrency 10
  bench_procrastinate.py latency        --dsn DSN --jobs 200 --interval-ms 20
  bench_procrastinate.py sweep          --dsn ADMIN_DSN --procs 1,2 --concurrency 1,10,50

What each measures, and how:

setup
    ``app.schema_manager.apply_schema_async()`` (what ``procrastinate schema --apply`` runs).
enqueue-single
    ``noop.defer_async(i=...)``, one job per call, from ``--concurrency`` coroutines sharing
    the app's ``PsycopgConnector``, its pool holding one connection per client (opened, and
    one warm-up defer per client made, before the clock starts). Reports jobs/s over the
    wall time and p50/p99 of the per-call latency.
enqueue-bulk
    ``noop.batch_defer_async(*kwargs)`` with ``--batch`` jobs a call, from ``--clients``
    callers (default 1).
process
    Defers ``--jobs`` no-op jobs in bulk and ANALYZEs the tables (not timed; skip the
    ANALYZE with ``--no-analyze``). Then starts ``--procs`` worker processes, each the real
    ``procrastinate worker`` CLI on procrastinate_app.py's ``async def`` no-op task, with
    ``--concurrency`` (Procrastinate's knob for async tasks) and a connector pool of
    ``--pool-size`` connections (0: ``min(concurrency, 50)``, at least 2). Procrastinate's
    defaults otherwise: LISTEN/NOTIFY on, finished jobs kept (``delete_jobs=never``). The
    clock runs from the first job finished to the last, read from the ``succeeded`` rows of
    ``procrastinate_events`` (PostgreSQL's clock). Start-up and PostgreSQL's and the workers'
    CPU time per job are reported apart.
latency
    One idle ``procrastinate worker`` (concurrency 1, Procrastinate's default). After five
    warm-up jobs, ``--jobs`` jobs are deferred one at a time, ``--interval-ms`` apart, each
    carrying the time.time() at which its defer was issued; the task subtracts it from its
    own time.time() on entry. Reports p50/p95/p99 in ms. Wake-up is LISTEN/NOTIFY.
sweep
    ``process`` at every combination of ``--procs``, ``--concurrency`` and ``--pool-size``
    (``--repeat`` times each), each in a fresh database created next to ``--dsn`` and
    dropped after; reports every run and the best for each process count. Procrastinate
    runs about 1,000 jobs/s here: sweep with ``--jobs 10000`` (the default), then run
    ``process`` once at full size with the best setting.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import peers_venv  # type: ignore[import-not-found]

    peers_venv.reexec_in_venv()

import asyncio
import itertools
import time
from dataclasses import dataclass
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import asyncpg
import peers_common as common  # type: ignore[import-not-found]
from procrastinate_app import (  # type: ignore[import-not-found]
    app,
    connector,
    noop,
    stamp,
)

if TYPE_CHECKING:
    import argparse

PEER = "procrastinate"
SCRIPT = Path(__file__).resolve()
FILL_CHUNK = 5000
COUNT_ANY = "SELECT count(*) FROM procrastinate_jobs"
LIVE = "SELECT EXISTS (SELECT FROM procrastinate_jobs WHERE status IN ('todo', 'doing'))"
COUNT_DONE = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
DONE_INSTANTS = "SELECT at FROM procrastinate_events WHERE type = 'succeeded'"


def describe() -> dict[str, Any]:
    return {"peer": PEER, "version": version("procrastinate")}


async def server_cpu(dsn: str) -> common.CpuMeter:
    conn = await asyncpg.connect(dsn)
    try:
        return await common.CpuMeter.for_server(conn)
    finally:
        await conn.close()


# -- the client side -----------------------------------------------------------------------


async def setup(dsn: str) -> dict[str, Any]:
    with app.replace_connector(connector(dsn, 1)):
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
    return {**describe(), "workload": "setup"}


async def fill(dsn: str, jobs: int, *, analyze: bool) -> float:
    """Defer ``jobs`` no-op jobs in bulk, then ANALYZE unless told not to; returns the
    defer's jobs/s (reported, not the benchmark)."""
    with app.replace_connector(connector(dsn, 1)):
        async with app.open_async():
            started = time.perf_counter()
            for start in range(0, jobs, FILL_CHUNK):
                n = min(FILL_CHUNK, jobs - start)
                await noop.batch_defer_async(*([common.PAYLOAD] * n))
            rate = jobs / (time.perf_counter() - started)
    if analyze:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("ANALYZE procrastinate_jobs; ANALYZE procrastinate_events")
        finally:
            await conn.close()
    return rate


async def enqueue_single(dsn: str, jobs: int, concurrency: int) -> dict[str, Any]:
    cpu = await server_cpu(dsn)
    with app.replace_connector(connector(dsn, concurrency)):
        async with app.open_async():
            await asyncio.gather(*(noop.defer_async(**common.PAYLOAD) for _ in range(concurrency)))
            cpu.start()

            async def enqueue(_client: int) -> None:
                await noop.defer_async(**common.PAYLOAD)

            result = await common.concurrent_enqueues(concurrency, jobs, enqueue)
            cpu.stop_db(jobs)
    return {
        **describe(),
        "workload": "enqueue-single",
        "jobs": jobs,
        "concurrency": concurrency,
        **result,
        **cpu.per_job,
        "api": "task.defer_async(**kwargs); PsycopgConnector, one pooled connection per client",
    }


async def enqueue_bulk(dsn: str, jobs: int, batch: int, clients: int) -> dict[str, Any]:
    cpu = await server_cpu(dsn)
    kwargs = [common.PAYLOAD] * batch
    with app.replace_connector(connector(dsn, max(clients, 1))):
        async with app.open_async():
            await asyncio.gather(*(noop.batch_defer_async(common.PAYLOAD) for _ in range(clients)))
            cpu.start()

            async def enqueue(_client: int, n: int) -> None:
                await noop.batch_defer_async(*kwargs[:n])

            result = await common.bulk_enqueues(clients, jobs, batch, enqueue)
            cpu.stop_db(jobs)
    return {
        **describe(),
        "workload": "enqueue-bulk",
        "jobs": jobs,
        "batch": batch,
        "clients": clients,
        **result,
        **cpu.per_job,
        "api": "task.batch_defer_async(*kwargs)",
    }


@dataclass(frozen=True)
class WorkerConfig:
    """How each ``procrastinate worker`` is configured."""

    concurrency: int = 10
    pool_size: int = 0  # 0 = min(concurrency, 50), at least 2

    @property
    def pool(self) -> int:
        return self.pool_size if self.pool_size > 0 else max(2, min(self.concurrency, 50))

    def argv(self) -> list[str]:
        return [
            str(common.VENV_BIN / "procrastinate"),
            "--app=procrastinate_app.app",
            "--log-level=warning",  # as our worker runs in the benchmark: no line per job
            "worker",
            f"--concurrency={self.concurrency}",
        ]

    def env(self, dsn: str) -> dict[str, str]:
        return {"BENCH_PEER_DSN": dsn, "BENCH_PEER_POOL_SIZE": str(self.pool)}


async def process(run: common.ProcessRun, worker: WorkerConfig) -> dict[str, Any]:
    await common.ensure_empty(run.dsn, COUNT_ANY)
    fill_rate = await fill(run.dsn, run.jobs, analyze=run.analyze)
    argv = worker.argv()
    spec = common.DrainSpec(
        run.jobs,
        run.procs,
        argv,
        worker.env(run.dsn),
        LIVE,
        COUNT_DONE,
        DONE_INSTANTS,
        run.timeout_s,
    )
    measured = await common.drain(run.dsn, spec)
    return {
        **describe(),
        "workload": "process",
        "jobs": run.jobs,
        "procs": run.procs,
        "concurrency": worker.concurrency,
        "pool_size": worker.pool,
        **measured,
        "fill_jobs_per_s": common.rounded(fill_rate, 1),
        "analyzed_after_fill": run.analyze,
        "worker": " ".join(argv[1:]),
    }


async def latency(dsn: str, jobs: int, interval_ms: float, concurrency: int) -> dict[str, Any]:
    await common.ensure_empty(dsn, COUNT_ANY)

    async def enqueue(i: int, issued_at: float) -> None:
        await stamp.defer_async(i=i, t=issued_at)

    worker = WorkerConfig(concurrency=concurrency)
    spec = common.LatencySpec(jobs, interval_ms / 1000, worker.argv(), worker.env(dsn), enqueue)
    with app.replace_connector(connector(dsn, 1)):
        async with app.open_async():
            result = await common.latency(spec)
    return {**describe(), "workload": "latency", "concurrency": concurrency, **result}


async def sweep(args: argparse.Namespace) -> dict[str, Any]:
    grid: list[dict[str, int | str]] = [
        {"procs": p, "concurrency": c, "pool_size": s}
        for p, c, s in itertools.product(args.procs, args.concurrency, args.pool_size)
    ]
    spec = common.SweepSpec(SCRIPT, PEER, args.dsn, grid, args.jobs, args.run_timeout, args.repeat)
    return {**describe(), **await common.sweep(spec)}


def main() -> None:
    parser, cmds = common.build_parser(__doc__ or "")
    cmds["enqueue-single"].set_defaults(jobs=10_000)
    p = cmds["process"]
    p.set_defaults(jobs=20_000)
    p.add_argument("--concurrency", type=int, default=10, help="procrastinate worker -c")
    p.add_argument("--pool-size", type=int, default=0, help="0 = min(concurrency, 50)")
    cmds["latency"].add_argument(
        "--concurrency", type=int, default=1, help="procrastinate worker -c (default 1)"
    )
    p = cmds["sweep"]
    p.set_defaults(jobs=10_000)
    p.add_argument("--concurrency", type=common.int_list, default=[1, 10, 50], help="e.g. 1,10")
    p.add_argument(
        "--pool-size", type=common.int_list, default=[0], help="e.g. 0,10; 0 = min(c, 50)"
    )
    args = parser.parse_args()

    if args.command == "setup":
        work = setup(args.dsn)
    elif args.command == "enqueue-single":
        work = enqueue_single(args.dsn, args.jobs, args.concurrency)
    elif args.command == "enqueue-bulk":
        work = enqueue_bulk(args.dsn, args.jobs, args.batch, args.clients)
    elif args.command == "process":
        work = process(
            common.ProcessRun.from_args(args), WorkerConfig(args.concurrency, args.pool_size)
        )
    elif args.command == "latency":
        work = latency(args.dsn, args.jobs, args.interval_ms, args.concurrency)
    else:
        work = sweep(args)
    result = common.run(work, timeout_s=args.timeout, loop=args.loop)
    common.emit({**result, "loop": args.loop})


if __name__ == "__main__":
    main()
