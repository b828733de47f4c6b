"""The benchmark: our queue's throughput, latency and database cost, side by side with peers.

Starts its own durable PostgreSQL (fsync on, as in production) with the same tooling as the
tests, a fresh database per workload, and real ``queue-api`` / ``queue-worker`` processes:

  http_single     POST /jobs with an API key from 64 connections for 30 s (wrk when installed,
                  else loadgen.py in its own process), jobs/s, p50/p99 latency, and the API
                  process's CPU per request
  http_batch      POST /v1/jobs/batch, 1,000 jobs a request from 4 clients, jobs/s
  python_bulk     Queue.enqueue_many, 1,000 jobs a call, jobs/s
  process         100,000 pre-enqueued no-op jobs, 1 and 2 worker processes, jobs/s (from
                  the first completion to the last) and PostgreSQL CPU per job
  process_keys    `process` with every job under a concurrency key, 1,000 distinct keys (limit
                  10 each, so the limits never bind: what the keyed claim costs), and the ratio
                  to `process` when both ran
  latency         enqueue-to-start of 200 jobs spaced 20 ms apart, one idle worker
  history         `process` and the claim statement's latency with 1,000,000 finished jobs in
                  the table, against an empty table
  mixed           producers and workers at once, as users run it: wrk's 64 connections posting
                  single jobs and one client posting a batch of 100 every 50 ms, an API key
                  and an Idempotency-Key on every job, 2 worker processes, for 30 s; jobs/s
                  completed within that window, enqueue p50/p99 (wrk's), and enqueue-to-start
                  and enqueue-to-completed p50/p99 from the jobs table (PostgreSQL's clock)
  lone_caller     one caller enqueueing 2,000 jobs one after another: Queue.enqueue, and POST
                  /jobs from one keep-alive httpx client (with and without an Idempotency-Key);
                  p50/p99 ms a call
  peers           the same workloads on PgQueuer and Procrastinate (benchmarks/peers/), best
                  configuration of a small sweep, and the ratio ours/peer (mixed and
                  lone_caller: PgQueuer's Python API, since it has no HTTP)
  gate            (--gate, or named in --only) the regression gate of bench_gate.py: processing
                  with 1 and 2 worker processes, ours and PgQueuer's, 20,000 jobs each; exits 1
                  when a ratio ours/PgQueuer falls below its documented fraction

Figures are printed as a table and written as JSON to benchmarks/results/. They are reported,
never asserted, but for the gate's ratios. ``--smoke`` runs every workload of ours tiny and
fast (``make test`` runs it); ``make bench-smoke`` adds the gate, and CI runs the gate.

    make bench            # everything, about 20 minutes
    make bench-smoke      # every workload of ours, tiny, and the gate: about 2 minutes
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import bench_gate
import bench_report
import httpx
import uvloop

from queue_core.db import create_pool
from queue_core.jobs import NewJob
from queue_core.keyed import first_row, job_columns
from queue_core.keys import KeyStore, Scope
from queue_core.migrate import upgrade
from queue_core.queue import Q_ENQUEUE_ONE, Queue
from queue_devtools.pgcluster import PgCluster, free_port, temporary_cluster

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
RESULTS = HERE / "results"


@dataclass(frozen=True)
class Sizes:
    http_seconds: float = 30.0
    http_connections: int = 64
    batches: int = 100
    process_jobs: int = 100_000
    concurrencies: tuple[int, ...] = (100, 500, 1000)
    latency_jobs: int = 200
    history_rows: int = 1_000_000
    # Empty and history-laden runs alternate this many times; their medians are compared. One
    # pair of 2-second runs differs by more than the 10 % being looked for.
    history_repeats: int = 3
    # mixed: wrk's connections posting single jobs in a closed loop, and one client posting
    # a batch of mixed_batch jobs every mixed_batch_interval_s (up to 2,000 jobs/s), while
    # 2 worker processes run, for mixed_seconds.
    mixed_seconds: float = 30.0
    mixed_batch: int = 100
    mixed_batch_interval_s: float = 0.05
    # lone_caller: calls one after another, each timed.
    lone_calls: int = 2000
    lone_seconds: float = 10.0  # the lone caller over one wrk connection


SMOKE = Sizes(
    http_seconds=2.0,
    batches=5,
    process_jobs=3_000,
    concurrencies=(50,),
    latency_jobs=20,
    history_rows=20_000,
    history_repeats=1,
    mixed_seconds=3.0,
    lone_calls=300,
    lone_seconds=1.0,
)


@dataclass
class Report:
    machine: dict[str, Any]
    results: dict[str, Any] = field(default_factory=dict)

    def add(self, key: str, value: Any) -> None:  # noqa: ANN401 - JSON-shaped figures
        self.results[key] = value
        print(f"  {key}: {json.dumps(value)}", flush=True)


# -- infrastructure ------------------------------------------------------------------------


class Bench:
    def __init__(self, cluster: PgCluster) -> None:
        self.cluster = cluster
        self._databases: list[str] = []

    def fresh_database(self) -> str:
        """A new migrated database. Workloads run one after another, so the previous one is
        dropped first: left behind, its dead rows would have autovacuum working during the
        next measurement (the peers' harness drops its databases too)."""
        for old in self._databases:
            asyncio.run(_execute(self.cluster.url(), f'DROP DATABASE "{old}" WITH (FORCE)'))
        name = f"bench_{uuid.uuid4().hex[:10]}"
        self._databases = [name]
        asyncio.run(_execute(self.cluster.url(), f'CREATE DATABASE "{name}"'))
        url = self.cluster.url(name)
        upgrade(url)
        return url

    def postgres_cpu_s(self) -> float:
        """CPU seconds used by PostgreSQL so far: the postmaster, its reaped children and its
        live ones (from /proc; Linux only)."""
        ticks = os.sysconf("SC_CLK_TCK")
        pid = self.cluster.postmaster_pid()
        if pid is None:
            return 0.0
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                ppid, utime, stime, cutime, cstime = (int(fields[i]) for i in (1, 11, 12, 13, 14))
                if int(stat.parent.name) == pid:
                    total += utime + stime + cutime + cstime
                elif ppid == pid:
                    total += utime + stime
        return total / ticks


async def _execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def processes(
    commands: list[tuple[str, dict[str, str]]],
) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [
        subprocess.Popen(
            [str(BIN / cmd)],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for cmd, env in commands
    ]
    try:
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def wait_http(url: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s")


def worker_env(url: str, concurrency: int) -> dict[str, str]:
    return {
        "DATABASE_URL": url,
        "WORKER_CONCURRENCY": str(concurrency),
        "WORKER_METRICS_PORT": str(free_port()),
        "LOG_LEVEL": "WARNING",  # one log line per job is what users get; not what we measure
        "LOG_FORMAT": "json",
    }


def api_env(url: str, port: int, *, auth: bool = False) -> dict[str, str]:
    return {
        "DATABASE_URL": url,
        "API_PORT": str(port),
        "API_HOST": "127.0.0.1",
        # Off: throughput of the queue behind the API, as before API keys. On (as users run
        # it): requests carry a key made by bench_key().
        "API_AUTH": "on" if auth else "off",
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
    }


async def bench_key(url: str) -> str:
    """A real API key that may enqueue (made as `queue-keys create` makes one)."""
    pool = await create_pool(url, max_size=1)
    try:
        new = await KeyStore(pool).create(name="bench", scopes=[Scope.JOBS_WRITE])
    finally:
        await pool.close()
    return new.secret


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- enqueue -------------------------------------------------------------------------------


def http_single(bench: Bench, sizes: Sizes) -> dict[str, Any]:
    """POST /jobs with an API key (API_AUTH on, as users run it), no Idempotency-Key."""
    url = bench.fresh_database()
    key = asyncio.run(bench_key(url))
    port = free_port()
    with processes([("queue-api", api_env(url, port, auth=True))]) as (api,):
        wait_http(f"http://127.0.0.1:{port}/health")
        target = f"http://127.0.0.1:{port}/jobs"
        load = LoadSpec(target, sizes.http_connections, sizes.http_seconds, key)
        api_cpu = process_cpu_s(api.pid)
        figures = load.run()
        api_cpu = process_cpu_s(api.pid) - api_cpu
    return {
        **figures,
        "api_cpu_us_per_request": api_cpu / max(1, figures["requests"]) * 1e6,
        "auth": "API key (Bearer)",
    }


@dataclass(frozen=True)
class LoadSpec:
    """Single POST /jobs from ``connections`` connections for ``seconds``: wrk (2 threads,
    post_job.lua) when installed, else loadgen.py in a process of its own. ``key``: the API
    key every request carries; ``idempotency``: a fresh Idempotency-Key on every request;
    ``get``: a plain GET of ``target`` instead (wrk only)."""

    target: str
    connections: int
    seconds: float
    key: str | None = None
    idempotency: bool = False
    get: bool = False
    wrk: str | None = field(default_factory=lambda: shutil.which("wrk"))

    def argv(self) -> list[str]:
        if self.wrk:
            threads = min(2, self.connections)  # wrk wants a connection per thread at least
            script = [] if self.get else ["-s", str(HERE / "post_job.lua")]
            return [
                self.wrk, f"-t{threads}", f"-c{self.connections}", f"-d{self.seconds:g}s",
                "--latency", *script, self.target,
            ]  # fmt: skip
        if self.get:
            raise ValueError("loadgen.py only posts jobs: a GET load needs wrk")
        return [
            sys.executable, str(HERE / "loadgen.py"), self.target,
            "--connections", str(self.connections), "--seconds", str(self.seconds),
            *(["--idempotency"] if self.idempotency else []),
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "BENCH_API_KEY": self.key or "",
            "BENCH_IDEMPOTENCY": "1" if self.idempotency else "0",
        }

    def run(self) -> dict[str, Any]:
        """Run the load to its end; its figures."""
        out = subprocess.run(
            self.argv(), env=self.env(), capture_output=True, text=True, check=True,
            timeout=self.seconds + 60,
        ).stdout  # fmt: skip
        return self.figures(out)

    def figures(self, out: str) -> dict[str, Any]:
        return _wrk_figures(out, self) if self.wrk else _loadgen_figures(out, self)


def _wrk_figures(out: str, load: LoadSpec) -> dict[str, Any]:
    def latency(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    requests = re.search(r"^\s*(\d+) requests in", out, re.MULTILINE)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "generator": f"wrk ({min(2, load.connections)} threads)",
        "connections": load.connections,
        "requests": int(requests.group(1)) if requests else 0,
        "jobs_per_s": float(rate.group(1)) if rate else float("nan"),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "errors": int(non_2xx.group(1)) if non_2xx else 0,
    }


def _loadgen_figures(out: str, load: LoadSpec) -> dict[str, Any]:
    data = json.loads(out)
    latencies = data["latencies_ms"]
    return {
        "generator": "loadgen.py (httpx, 1 process; install wrk for a compiled one)",
        "connections": load.connections,
        "requests": data["requests"],
        "jobs_per_s": (data["requests"] - data["errors"]) / data["seconds"],
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "errors": data["errors"],
    }


def http_batch(bench: Bench, sizes: Sizes, clients: int = 4) -> dict[str, Any]:
    url = bench.fresh_database()
    port = free_port()
    body = json.dumps({"jobs": [{"type": "noop", "payload": {"i": i}} for i in range(1000)]})

    async def client(http: httpx.AsyncClient, count: int) -> None:
        for _ in range(count):
            response = await http.post(
                "/v1/jobs/batch", content=body, headers={"content-type": "application/json"}
            )
            response.raise_for_status()

    async def run() -> float:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            started = time.perf_counter()
            await asyncio.gather(*(client(http, sizes.batches // clients) for _ in range(clients)))
            return time.perf_counter() - started

    with processes([("queue-api", api_env(url, port))]):
        wait_http(f"http://127.0.0.1:{port}/health")
        seconds = asyncio.run(run())
    jobs = (sizes.batches // clients) * clients * 1000
    return {"jobs_per_s": jobs / seconds, "batch": 1000, "clients": clients}


def python_bulk(bench: Bench, sizes: Sizes) -> dict[str, Any]:
    """``Queue.enqueue_many`` of 1,000 jobs a call, one caller. On uvloop, as every Python
    client of the peers' harness runs (``peers_common.run``) and as our services do: on
    asyncio's own loop the comparison would measure two event loops as well as two queues."""
    url = bench.fresh_database()

    async def run() -> float:
        pool = await create_pool(url, max_size=2)
        queue = Queue(pool)
        batch = [NewJob(type="noop", payload={"i": i}) for i in range(1000)]
        started = time.perf_counter()
        for _ in range(sizes.batches):
            await queue.enqueue_many(batch)
        elapsed = time.perf_counter() - started
        await pool.close()
        return elapsed

    return {"jobs_per_s": sizes.batches * 1000 / uvloop.run(run()), "batch": 1000}


# -- processing ----------------------------------------------------------------------------


# process_keys: distinct concurrency keys in use, and each key's limit (never reached: 1,000
# keys x 10 slots is far above the workers' slots).
PROCESS_KEYS = 1000
PROCESS_KEY_LIMIT = 10


async def _fill(url: str, jobs: int, keys: int = 0) -> None:
    pool = await create_pool(url, max_size=2)
    queue = Queue(pool)
    batch = [NewJob(type="noop", payload={"i": 1})] * 5000
    if keys:
        batch = [
            NewJob(
                type="noop",
                payload={"i": 1},
                concurrency_key=f"key:{n % keys}",
                concurrency_limit=PROCESS_KEY_LIMIT,
            )
            for n in range(5000)
        ]
    for start in range(0, jobs, 5000):
        await queue.enqueue_many(batch[: min(5000, jobs - start)])
    # As the peers' scripts do: the planner sees the backlog, not the empty table it last saw.
    await pool.execute("ANALYZE jobs")
    await pool.close()


# How often the harness looks at the table while jobs run. A look costs the server a count
# over the live jobs, so it is kept as rare as the peers' harness keeps it (peers_common.POLL_S):
# the instants themselves are read from the table afterwards, not from the polling.
POLL_S = 0.25


async def _wait_done(url: str, jobs: int, since: datetime, timeout_s: float) -> tuple[int, float]:
    """Wait until no job is pending or running; return (jobs finished after the first
    completion instant, seconds from that instant to the last), both read from finished_at
    (PostgreSQL's clock) of the jobs finished since ``since``, as the peers' harness reads
    their tables."""
    conn = await asyncpg.connect(url)
    # The harness must not be the load it measures: each look asks only what the partial
    # indexes answer (is any job pending, is any running), stopping at the first live row.
    # Left to itself the planner counted with a parallel scan of the whole table, ~100 ms
    # of both cores every look once a million finished jobs sat in it.
    await conn.execute("SET enable_seqscan = off")
    deadline = time.perf_counter() + timeout_s
    try:
        while time.perf_counter() < deadline:
            if not await conn.fetchval(LIVE_SQL):
                row = await conn.fetchrow(COMPLETIONS_SQL, since)
                if row is None:  # an aggregate always returns its row
                    raise RuntimeError("no completions read back")
                return row["after_first"], row["seconds"] or 0.0
            await asyncio.sleep(POLL_S)
    finally:
        await conn.close()
    raise RuntimeError(f"{jobs} jobs not processed within {timeout_s} s")


LIVE_SQL = """
SELECT EXISTS (SELECT FROM jobs WHERE status = 'pending')
    OR EXISTS (SELECT FROM jobs WHERE status = 'running')
"""
COMPLETIONS_SQL = """
WITH done AS (SELECT finished_at FROM jobs WHERE finished_at >= $1)
SELECT count(*) FILTER (WHERE finished_at > (SELECT min(finished_at) FROM done)) AS after_first,
       extract(epoch FROM max(finished_at) - min(finished_at))::float8 AS seconds
FROM done
"""


async def _checkpoint(url: str) -> None:
    """Write out everything dirty now. Each processing run starts right after a checkpoint,
    ours and the peers' alike (peers_common.drain), so that none runs into one made due by
    earlier work (a fill of a million rows, the previous run's WAL) or by the 5-minute
    timer: that alone cost a 2-second run up to a quarter of its throughput."""
    await _execute(url, "CHECKPOINT")


async def _server_now(url: str) -> datetime:
    conn = await asyncpg.connect(url)
    try:
        now: datetime = await conn.fetchval("SELECT now()")
        return now
    finally:
        await conn.close()


def process(  # noqa: PLR0913 - the workload's knobs
    bench: Bench,
    jobs: int,
    procs: int,
    concurrency: int,
    url: str | None = None,
    *,
    keys: int = 0,
) -> dict[str, Any]:
    url = url or bench.fresh_database()
    asyncio.run(_fill(url, jobs, keys))
    asyncio.run(_checkpoint(url))
    since = asyncio.run(_server_now(url))
    cpu_before = bench.postgres_cpu_s()
    with processes([("queue-worker", worker_env(url, concurrency)) for _ in range(procs)]):
        after_first, seconds = asyncio.run(_wait_done(url, jobs, since, timeout_s=600))
    cpu = bench.postgres_cpu_s() - cpu_before
    # From the first completion on: worker start-up is not queue throughput. Jobs finished at
    # that first instant (one batch's commit) are not counted, as in the peers' harness.
    return {
        "jobs": jobs,
        "procs": procs,
        "concurrency": concurrency,
        "jobs_per_s": after_first / max(seconds, 1e-6),
        "seconds": seconds,
        "timing": "first-completion-to-last",
        "db_cpu_us_per_job": cpu / jobs * 1e6,
    }


def process_keys(bench: Bench, sizes: Sizes, report: Report) -> None:
    """``process`` with PROCESS_KEYS concurrency keys in use, and its ratio to ``process``."""
    for procs, label in ((1, "1_proc"), (2, "2_procs")):
        keyed = best_process(bench, sizes, procs=procs, keys=PROCESS_KEYS)
        plain = report.results.get(f"process_{label}")
        if plain:
            keyed["ratio_to_process"] = keyed["jobs_per_s"] / plain["jobs_per_s"]
        report.add(f"process_keys_{label}", keyed)


def best_process(
    bench: Bench,
    sizes: Sizes,
    procs: int,
    url_factory: Any = None,  # noqa: ANN401
    *,
    keys: int = 0,
) -> dict[str, Any]:
    runs = [
        process(
            bench,
            sizes.process_jobs,
            procs,
            c,
            url_factory() if url_factory else None,
            keys=keys,
        )
        for c in sizes.concurrencies
    ]
    best = max(runs, key=lambda r: r["jobs_per_s"])
    return {**best, "sweep": {str(r["concurrency"]): round(r["jobs_per_s"]) for r in runs}}


# -- latency -------------------------------------------------------------------------------


def latency(bench: Bench, sizes: Sizes, interval_s: float = 0.02) -> dict[str, Any]:
    url = bench.fresh_database()

    async def run() -> list[float]:
        pool = await create_pool(url, max_size=2)
        queue = Queue(pool)
        await asyncio.sleep(1.0)  # let the worker settle into its idle wait
        ids = []
        for _ in range(sizes.latency_jobs):
            ids.append(await queue.enqueue(NewJob(type="noop", payload={"t": time.time()})))
            await asyncio.sleep(interval_s)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = await pool.fetch(
                "SELECT (extract(epoch FROM started_at) - (payload->>'t')::float8) * 1000 AS ms"
                " FROM jobs WHERE id = ANY($1::uuid[]) AND started_at IS NOT NULL",
                ids,
            )
            if len(rows) == len(ids):
                await pool.close()
                return [float(r["ms"]) for r in rows]
            await asyncio.sleep(0.05)
        raise RuntimeError("latency jobs did not all start")

    env = {**worker_env(url, 10), "WORKER_POLL_INTERVAL_S": "5"}  # prove NOTIFY, not polling
    with processes([("queue-worker", env)]):
        wait_http(f"http://127.0.0.1:{env['WORKER_METRICS_PORT']}/healthz")
        values = asyncio.run(run())
    return {
        "jobs": len(values),
        "interval_ms": interval_s * 1000,
        "p50_ms": statistics.median(values),
        "p95_ms": percentile(values, 0.95),
        "p99_ms": percentile(values, 0.99),
        "measured": "claim (jobs.started_at) minus the client's clock before the enqueue call",
    }


# -- the whole path: producers and workers at once, and a lone caller ----------------------


def process_cpu_s(pid: int) -> float:
    """CPU seconds used so far by process ``pid`` and its live children (from /proc)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(stat.parent.name) == pid or int(fields[1]) == pid:
                total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


async def _until_idle(url: str, timeout_s: float) -> None:
    """Wait until no job is pending or running."""
    conn = await asyncpg.connect(url)
    await conn.execute("SET enable_seqscan = off")  # as _wait_done: only the partial indexes
    deadline = time.monotonic() + timeout_s
    try:
        while await conn.fetchval(LIVE_SQL):
            if time.monotonic() > deadline:
                raise RuntimeError(f"jobs still pending or running after {timeout_s:.0f} s")
            await asyncio.sleep(POLL_S)
    finally:
        await conn.close()


# Every job created in the run (from $1 on, the end of the producing window $2), by
# PostgreSQL's clock: created_at is the enqueue's transaction time, started_at the claim's.
MIXED_FIGURES_SQL = """
WITH run AS (
    SELECT payload->>'source' AS source, status, finished_at,
           extract(epoch FROM started_at - created_at) * 1000 AS to_start,
           extract(epoch FROM finished_at - created_at) * 1000 AS to_done
    FROM jobs WHERE created_at >= $1
)
SELECT count(*) AS enqueued,
       count(*) FILTER (WHERE source = 'wrk' OR source = 'loadgen') AS single_enqueued,
       count(*) FILTER (WHERE source = 'batch') AS batch_enqueued,
       count(*) FILTER (WHERE status = 'completed') AS completed,
       count(*) FILTER (WHERE finished_at <= $2) AS completed_in_window,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY to_start) AS start_p50_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY to_start) AS start_p99_ms,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY to_done) AS done_p50_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY to_done) AS done_p99_ms
FROM run
"""


async def _batch_producer(
    http: httpx.AsyncClient, sizes: Sizes, *, idempotency: bool
) -> dict[str, Any]:
    """POST /v1/jobs/batch of ``sizes.mixed_batch`` jobs, each with an idempotency_key of its
    own, one every ``sizes.mixed_batch_interval_s`` until ``sizes.mixed_seconds`` are over
    (when a call takes longer than the interval, the next starts at once: no catching up)."""
    until = time.perf_counter() + sizes.mixed_seconds
    next_at = time.perf_counter()
    latencies: list[float] = []
    while next_at < until:
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        n = len(latencies)
        jobs = [{"type": "noop", "payload": {"source": "batch"}}] * sizes.mixed_batch
        if idempotency:
            jobs = [{**job, "idempotency_key": f"b{n}-{i}"} for i, job in enumerate(jobs)]
        body = json.dumps({"jobs": jobs})
        started = time.perf_counter()
        response = await http.post("/v1/jobs/batch", content=body)
        response.raise_for_status()
        latencies.append((time.perf_counter() - started) * 1000)
        next_at = max(next_at + sizes.mixed_batch_interval_s, time.perf_counter())
    return {
        "requests": len(latencies),
        "jobs": len(latencies) * sizes.mixed_batch,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
    }


@dataclass(frozen=True)
class MixedTarget:
    url: str  # the database
    base: str  # the API
    key: str  # an API key
    api_pid: int
    idempotency: bool


async def _mixed_producers(target: MixedTarget, sizes: Sizes) -> dict[str, Any]:
    url, base, key = target.url, target.base, target.key
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
        # Warm-up, not counted: the API's first requests and the workers' first jobs.
        for i in range(20):
            warm = await http.post(
                "/jobs",
                content=b'{"type":"noop","payload":{"source":"warm-up"}}',
                headers={"idempotency-key": f"warm-{i}"},
            )
            warm.raise_for_status()
        await _until_idle(url, 60)
        await _checkpoint(url)
        since = await _server_now(url)
        api_cpu = process_cpu_s(target.api_pid)
        load = LoadSpec(
            f"{base}/jobs",
            sizes.http_connections,
            sizes.mixed_seconds,
            key,
            idempotency=target.idempotency,
        )
        wrk = await asyncio.create_subprocess_exec(
            *load.argv(), env=load.env(), stdout=asyncio.subprocess.PIPE
        )
        batch = await _batch_producer(http, sizes, idempotency=target.idempotency)
        out, _ = await asyncio.wait_for(wrk.communicate(), sizes.mixed_seconds + 60)
        if wrk.returncode:
            raise RuntimeError(f"{load.argv()[0]} exited with {wrk.returncode}")
        until = await _server_now(url)
    return {
        "since": since,
        "until": until,
        "api_cpu_s": process_cpu_s(target.api_pid) - api_cpu,
        "single": load.figures(out.decode()),
        "batch": batch,
    }


def mixed(
    bench: Bench, sizes: Sizes, procs: int = 2, *, idempotency: bool = True
) -> dict[str, Any]:
    """HTTP producers (wrk's single POST /jobs and a paced batch client) and ``procs`` worker
    processes at once, with an API key and (unless told not to) an Idempotency-Key on every
    job, for ``sizes.mixed_seconds``; then, once every job is done, the figures from the jobs
    table."""
    url = bench.fresh_database()
    key = asyncio.run(bench_key(url))
    port = free_port()
    concurrency = sizes.concurrencies[0]
    workers = [worker_env(url, concurrency) for _ in range(procs)]
    commands = [("queue-api", api_env(url, port, auth=True))]
    commands += [("queue-worker", env) for env in workers]
    with processes(commands) as running:
        wait_http(f"http://127.0.0.1:{port}/health")
        for env in workers:
            wait_http(f"http://127.0.0.1:{env['WORKER_METRICS_PORT']}/healthz")
        target = MixedTarget(url, f"http://127.0.0.1:{port}", key, running[0].pid, idempotency)
        produced = asyncio.run(_mixed_producers(target, sizes))
        asyncio.run(_until_idle(url, 300))
    row = asyncio.run(_fetch_row(url, MIXED_FIGURES_SQL, produced["since"], produced["until"]))
    window_s = (produced["until"] - produced["since"]).total_seconds()
    single, batch = produced["single"], produced["batch"]
    return {
        "seconds": window_s,
        "procs": procs,
        "concurrency": concurrency,
        "enqueued": row["enqueued"],
        "completed": row["completed"],
        "completed_jobs_per_s": row["completed_in_window"] / window_s,
        "single": {**single, "jobs": row["single_enqueued"]},
        "batch": {
            **batch,
            "batch": sizes.mixed_batch,
            "interval_ms": sizes.mixed_batch_interval_s * 1000,
        },
        "api_cpu_us_per_job": produced["api_cpu_s"] / max(1, row["enqueued"]) * 1e6,
        **{
            name: float(row[name])
            for name in ("start_p50_ms", "start_p99_ms", "done_p50_ms", "done_p99_ms")
        },
        "auth": "API key (Bearer)"
        + (", an Idempotency-Key on every job" if idempotency else ", no Idempotency-Key"),
        "measured": "jobs/s: finished within the producing window; latencies: started_at and "
        "finished_at minus created_at (PostgreSQL's clock), every job of the window",
    }


async def _fetch_row(url: str, sql: str, *args: Any) -> asyncpg.Record:  # noqa: ANN401
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(sql, *args)
    finally:
        await conn.close()
    if row is None:
        raise RuntimeError("no row read back")
    return row


async def _timed_async(calls: int, call: Any, warm_up: int = 20) -> dict[str, float]:  # noqa: ANN401
    for _ in range(warm_up):
        await call()
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        latencies.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": percentile(latencies, 0.50), "p99_ms": percentile(latencies, 0.99)}


def _timed_sync(calls: int, call: Any, warm_up: int = 20) -> dict[str, float]:  # noqa: ANN401
    for _ in range(warm_up):
        call()
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": percentile(latencies, 0.50), "p99_ms": percentile(latencies, 0.99)}


async def _lone_python(url: str, calls: int) -> dict[str, Any]:
    pool = await create_pool(url)
    queue = Queue(pool)
    job = NewJob(type="noop", payload={"i": 1})
    try:
        enqueue = await _timed_async(calls, lambda: queue.enqueue(job))
        # The same statement without the group commit around it (a connection from the pool).
        enqueue_many_of_1 = await _timed_async(calls, lambda: queue.enqueue_many([job]))
        # The floor: the statement a lone enqueue sends, on a connection held throughout, with
        # nothing of the queue's around it.
        async with pool.acquire() as conn:
            alone = await _timed_async(
                calls, lambda: Q_ENQUEUE_ONE.execute(conn, **first_row(job_columns([job])))
            )
    finally:
        await pool.close()
    return {"enqueue": enqueue, "enqueue_many_of_1": enqueue_many_of_1, "statement": alone}


def _lone_http(base: str, key: str, calls: int, *, idempotency: bool) -> dict[str, float]:
    body = b'{"type":"noop","payload":{"i":1}}'
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    sent = iter(range(10**9))
    with httpx.Client(base_url=base, headers=headers, timeout=30) as http:

        def call() -> None:
            extra = {"idempotency-key": f"lone-{next(sent)}"} if idempotency else {}
            http.post("/jobs", content=body, headers=extra).raise_for_status()

        return _timed_sync(calls, call)


def lone_caller(bench: Bench, sizes: Sizes) -> dict[str, Any]:
    """One caller enqueueing ``sizes.lone_calls`` jobs one after another, never two at once:
    through Queue.enqueue (on uvloop, as PgQueuer's lone caller: see python_bulk), and over
    HTTP (one keep-alive httpx client, an API key), each call timed. No worker runs."""
    url = bench.fresh_database()
    key = asyncio.run(bench_key(url))
    python = uvloop.run(_lone_python(url, sizes.lone_calls))
    port = free_port()
    with processes([("queue-api", api_env(url, port, auth=True))]):
        wait_http(f"http://127.0.0.1:{port}/health")
        base = f"http://127.0.0.1:{port}"
        http = _lone_http(base, key, sizes.lone_calls, idempotency=False)
        keyed = _lone_http(base, key, sizes.lone_calls, idempotency=True)
        # The same over one wrk connection: the API's own latency, without httpx's CPU (about
        # a third of a call above) in the client.
        load = LoadSpec(f"{base}/jobs", 1, sizes.lone_seconds, key)
        one_connection = load.run() if load.wrk else None
        # The floor under it: an HTTP round trip through uvicorn and the app that touches no
        # database (GET /health), so that what a POST adds on top reads off the table.
        floor = LoadSpec(f"{base}/health", 1, sizes.lone_seconds, get=True)
        health = floor.run() if floor.wrk else None
    return {
        "calls": sizes.lone_calls,
        "python_enqueue": python["enqueue"],
        "python_enqueue_many_of_1": python["enqueue_many_of_1"],
        "python_statement_alone": python["statement"],
        "http": http,
        "http_idempotency_key": keyed,
        "http_wrk_one_connection": one_connection,
        "http_health_wrk_one_connection": health,
    }


# -- history -------------------------------------------------------------------------------

# A million jobs finished two days ago, one a millisecond apart, with UUIDv7 ids of their
# creation time like ours: the 48-bit Unix milliseconds, then random bits with the version
# nibble turned from 4 to 7 (bits 52 and 53). Spelled out because uuidv7() only exists from
# PostgreSQL 18 on, and the benchmark runs on 15 too (PG_BINDIR).
HISTORY_SQL = """
WITH history AS (
    SELECT now() - interval '2 days' + g * interval '1 millisecond' AS at
    FROM generate_series(1, $1::int) AS g
)
INSERT INTO jobs (id, type, payload, status, attempts, created_at, started_at, finished_at)
SELECT encode(
           set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
               PLACING substring(int8send((extract(epoch FROM at) * 1000)::int8) FROM 3)
               FROM 1 FOR 6), 52, 1), 53, 1),
           'hex')::uuid,
       'noop', '{"i": 1}', 'completed', 1, at, at, at
FROM history
"""


async def _add_history(url: str, rows: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(HISTORY_SQL, rows)
        await conn.execute("VACUUM ANALYZE jobs")
    finally:
        await conn.close()


async def _claim_latency_ms(url: str, samples: int = 300) -> float:
    """Median latency of a one-job claim, as a worker sees it (the commit included), with
    ``samples`` jobs enqueued behind whatever the table holds. Measured right after a
    checkpoint, like every run here: the claim itself takes about 0.1 ms of server time and
    its commit's WAL flush most of the rest, so a checkpoint writing out a million rows
    meanwhile would be what this measured."""
    pool = await create_pool(url, max_size=1)
    queue = Queue(pool)
    await queue.enqueue_many([NewJob(type="noop", payload={"i": 1})] * samples)
    await pool.execute("ANALYZE jobs")
    await _checkpoint(url)
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        await queue.claim(worker_id="bench:0:claim", queues=["default"], limit=1, lease_s=30)
        timings.append((time.perf_counter() - started) * 1000)
    await pool.close()
    return statistics.median(timings)


def history(bench: Bench, sizes: Sizes, concurrency: int) -> dict[str, Any]:
    """``process`` with 2 worker processes on an empty table and on one holding
    ``history_rows`` finished jobs, alternating ``history_repeats`` times (medians compared),
    and the claim statement's median latency on each."""

    def database(rows: int) -> str:
        url = bench.fresh_database()
        if rows:
            asyncio.run(_add_history(url, rows))
        return url

    sides = {"empty": 0, "with_history": sizes.history_rows}
    rates: dict[str, list[float]] = {label: [] for label in sides}
    claims: dict[str, list[float]] = {label: [] for label in sides}
    for _ in range(sizes.history_repeats):
        for label, rows in sides.items():
            run = process(bench, sizes.process_jobs, 2, concurrency, database(rows))
            rates[label].append(run["jobs_per_s"])
            claims[label].append(asyncio.run(_claim_latency_ms(database(rows))))
    results: dict[str, Any] = {
        label: {
            "finished_rows": rows,
            "jobs_per_s": statistics.median(rates[label]),
            "claim_ms": statistics.median(claims[label]),
            "runs": {
                "jobs_per_s": [round(r) for r in rates[label]],
                "claim_ms": [round(c, 3) for c in claims[label]],
            },
        }
        for label, rows in sides.items()
    }
    empty, full = results["empty"], results["with_history"]
    results["throughput_ratio"] = full["jobs_per_s"] / empty["jobs_per_s"]
    results["claim_latency_ratio"] = full["claim_ms"] / empty["claim_ms"]
    return results


# -- peers --------------------------------------------------------------------------------

PEERS = {
    # peer: (script, sweep options: the settings their documentation tunes for throughput,
    # jobs per sweep run: Procrastinate runs ~1k jobs/s, so 100k would take 10 minutes a run)
    "pgqueuer": (HERE / "peers" / "bench_pgqueuer.py", ["--batch", "10,100,300,1000"], None),
    "procrastinate": (
        HERE / "peers" / "bench_procrastinate.py",
        ["--concurrency", "1,10,50"],
        10_000,
    ),
}


def _peer(script: Path, *args: str, timeout_s: float = 1800) -> dict[str, Any]:
    """Run one peer command (it re-executes itself in benchmarks/.peers-venv) and return the
    JSON object it prints."""
    out = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True, text=True, check=True, timeout=timeout_s,
    ).stdout  # fmt: skip
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _peer_database(bench: Bench, script: Path) -> str:
    name = f"peer_{uuid.uuid4().hex[:10]}"
    asyncio.run(_execute(bench.cluster.url(), f'CREATE DATABASE "{name}"'))
    url = bench.cluster.url(name)
    _peer(script, "setup", "--dsn", url)
    return url


def peers(bench: Bench, sizes: Sizes) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for peer, (script, sweep_options, sweep_jobs) in PEERS.items():
        print(f"  {peer}: sweeping (a few minutes)", flush=True)
        jobs = min(sizes.process_jobs, sweep_jobs or sizes.process_jobs)
        sweep = _peer(
            script, "sweep", "--dsn", bench.cluster.url(), "--jobs", str(jobs),
            "--procs", "1,2", *sweep_options,
        )  # fmt: skip
        single = _peer(
            script, "enqueue-single", "--dsn", _peer_database(bench, script),
            "--jobs", "20000", "--concurrency", str(sizes.http_connections),
        )  # fmt: skip
        bulk = _peer(
            script, "enqueue-bulk", "--dsn", _peer_database(bench, script),
            "--jobs", str(sizes.batches * 1000), "--batch", "1000",
        )  # fmt: skip
        latency = _peer(
            script, "latency", "--dsn", _peer_database(bench, script),
            "--jobs", str(sizes.latency_jobs), "--interval-ms", "20",
        )  # fmt: skip
        results[peer] = {
            "process": sweep["best_by_procs"],
            "enqueue_single": single,
            "enqueue_bulk": bulk,
            "latency": latency,
        }
        if peer == "pgqueuer":  # the whole-path workloads exist for PgQueuer only
            results[peer] |= whole_path_peer(bench, sizes, script, sweep["best_by_procs"])
    return results


def whole_path_peer(
    bench: Bench, sizes: Sizes, script: Path, best_by_procs: dict[str, Any]
) -> dict[str, Any]:
    """``mixed`` and ``lone_caller`` on a peer: its Python API (it has no HTTP), its workers
    at the batch size that processed best with 2 processes."""
    batch = best_by_procs.get("2", {}).get("batch", 100)
    mixed = _peer(
        script, "mixed", "--dsn", _peer_database(bench, script),
        "--seconds", str(sizes.mixed_seconds), "--concurrency", str(sizes.http_connections),
        "--procs", "2", "--batch", str(batch), "--batch-jobs", str(sizes.mixed_batch),
        "--batch-interval-ms", str(sizes.mixed_batch_interval_s * 1000),
    )  # fmt: skip
    lone = _peer(
        script, "enqueue-sequential", "--dsn", _peer_database(bench, script),
        "--jobs", str(sizes.lone_calls),
    )  # fmt: skip
    return {"mixed": mixed, "lone_caller": lone}


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """ours / peer for each comparable figure this run measured on both sides (above 1: ours
    is faster; for latencies, below 1 is better)."""

    def figure(data: dict[str, Any], *path: str) -> float | None:
        for key in path:
            if not isinstance(data, dict) or key not in data:
                return None
            data = data[key]
        return float(data) if isinstance(data, int | float) else None

    pairs = {
        "process_1_proc": (("process_1_proc", "jobs_per_s"), ("process", "1", "jobs_per_s")),
        "process_2_procs": (("process_2_procs", "jobs_per_s"), ("process", "2", "jobs_per_s")),
        "bulk_enqueue": (("python_bulk", "jobs_per_s"), ("enqueue_bulk", "jobs_per_s")),
        "latency_p50": (("latency", "p50_ms"), ("latency", "p50_ms")),
        "mixed_completed": (
            ("mixed", "completed_jobs_per_s"),
            ("mixed", "completed_jobs_per_s"),
        ),
        "mixed_start_p99": (("mixed", "start_p99_ms"), ("mixed", "start_p99_ms")),
        "lone_caller_python_p50": (
            ("lone_caller", "python_enqueue", "p50_ms"),
            ("lone_caller", "p50_ms"),
        ),
        "lone_caller_http_p50": (("lone_caller", "http", "p50_ms"), ("lone_caller", "p50_ms")),
    }
    out: dict[str, Any] = {}
    for peer, figures in results.get("peers", {}).items():
        out[peer] = {}
        for name, (ours_path, theirs_path) in pairs.items():
            ours, theirs = figure(results, *ours_path), figure(figures, *theirs_path)
            if ours is not None and theirs:
                out[peer][name] = ours / theirs
    return out


# -- report --------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "os": platform.platform(),
    }


OURS = (
    "http_single", "http_batch", "python_bulk", "process", "process_keys", "latency", "history",
    "mixed", "lone_caller",
)  # fmt: skip


def run_ours(bench: Bench, sizes: Sizes, wanted: set[str], report: Report) -> None:
    if "http_single" in wanted:
        report.add("http_single", http_single(bench, sizes))
    if "http_batch" in wanted:
        report.add("http_batch", http_batch(bench, sizes))
    if "python_bulk" in wanted:
        report.add("python_bulk", python_bulk(bench, sizes))
    if "process" in wanted:
        report.add("process_1_proc", best_process(bench, sizes, procs=1))
        report.add("process_2_procs", best_process(bench, sizes, procs=2))
    if "process_keys" in wanted:
        process_keys(bench, sizes, report)
    if "latency" in wanted:
        report.add("latency", latency(bench, sizes))
    if "history" in wanted:
        best = report.results.get("process_2_procs", {}).get("concurrency", sizes.concurrencies[0])
        report.add("history", history(bench, sizes, best))
    if "mixed" in wanted:
        report.add("mixed", mixed(bench, sizes))
    if "lone_caller" in wanted:
        report.add("lone_caller", lone_caller(bench, sizes))


def gate(bench: Bench) -> dict[str, Any]:
    """The regression gate (bench_gate.py): processing with 1 and 2 worker processes, ours
    and PgQueuer's, at bench_gate.GATE_JOBS jobs, bench_gate.RUNS runs on each side, the best
    of each compared. Ours and PgQueuer's runs alternate, so that other work on the machine
    slows both sides alike: measured one side after the other, a busy minute fell on one."""
    script = PEERS["pgqueuer"][0]
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        side: {"1": [], "2": []} for side in ("ours", "pgqueuer")
    }
    for n in range(bench_gate.RUNS):
        batch = bench_gate.PGQUEUER_BATCHES[n % len(bench_gate.PGQUEUER_BATCHES)]
        for procs in (1, 2):
            ours = process(bench, bench_gate.GATE_JOBS, procs, bench_gate.OUR_CONCURRENCY)
            runs["ours"][str(procs)].append(ours)
            dsn = _peer_database(bench, script)
            theirs = _peer(
                script, "process", "--dsn", dsn, "--jobs", str(bench_gate.GATE_JOBS),
                "--procs", str(procs), "--batch", str(batch),
            )  # fmt: skip
            asyncio.run(_execute(bench.cluster.url(), f'DROP DATABASE "{dsn.rsplit("/", 1)[1]}"'))
            runs["pgqueuer"][str(procs)].append(theirs)
    best = {
        side: {procs: max(rs, key=lambda r: r["jobs_per_s"]) for procs, rs in by_procs.items()}
        for side, by_procs in runs.items()
    }
    return {
        "jobs": bench_gate.GATE_JOBS,
        **{
            side: {procs: [round(r["jobs_per_s"]) for r in rs] for procs, rs in by_procs.items()}
            for side, by_procs in runs.items()
        },
        **bench_gate.verdict(best["ours"], best["pgqueuer"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds not minutes")
    parser.add_argument("--only", nargs="*", help="run only these workloads")
    parser.add_argument("--no-peers", action="store_true", help="skip PgQueuer and Procrastinate")
    parser.add_argument(
        "--gate",
        action="store_true",
        help="also the regression gate (bench_gate.py; or name it in --only); exit 1 if it fails",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args()
    sizes = SMOKE if args.smoke else Sizes()
    wanted = set(OURS if args.only is None else args.only)
    report = Report(machine=machine())
    with temporary_cluster(durable=True) as cluster:
        version = asyncio.run(_server_version(cluster.url()))
        report.machine["postgresql"] = version
        print(f"PostgreSQL {version}, durable commits; {report.machine['cpus']} CPUs", flush=True)
        bench = Bench(cluster)
        run_ours(bench, sizes, wanted, report)
        if not args.smoke and not args.no_peers and (args.only is None or "peers" in args.only):
            report.add("peers", peers(bench, sizes))
            report.add("ratios", ratios(report.results))
        if args.gate or "gate" in wanted:
            report.add("gate", gate(bench))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"machine": report.machine, "results": report.results}, indent=2)
    )
    print(f"\n{describe_machine(report.machine)}\n")
    print(bench_report.table(report.results))
    if args.smoke:
        print("\n(smoke sizes: too small to judge the targets by)")
    else:
        print("\nTargets (this run):")
        print(bench_report.targets(report.results))
    print(f"\nwritten to {args.out}")
    if "gate" in report.results:
        sys.exit(print_gate(report.results["gate"]))


def print_gate(gate: dict[str, Any]) -> int:
    """Print the gate's ratios against its fractions; return the exit status (1: failed)."""
    print(f"\nRegression gate ({gate['jobs']:,} jobs; ours/PgQueuer, at least):")
    for name, ratio in gate["ratios"].items():
        print(f"- {name}: {ratio:.2f} (at least {gate['fractions'][name]})")
    print("Gate " + (f"FAILED: {'; '.join(gate['failed'])}" if gate["failed"] else "passed"))
    return 1 if gate["failed"] else 0


def describe_machine(machine: dict[str, Any]) -> str:
    return (
        f"{machine['date']}: {machine['cpus']} CPUs ({machine['cpu']}), PostgreSQL "
        f"{machine.get('postgresql', '?')} on the same machine with durable commits, Python "
        f"{machine['python']}"
    )


async def _server_version(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        version: str = await conn.fetchval("SHOW server_version")
        return version
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
