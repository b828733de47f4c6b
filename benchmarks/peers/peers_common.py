"""What the peer benchmarks share: the command line, worker processes, timing and output.

Every measurement follows the same rules for every peer:

* one JSON object on stdout per command (everything else goes to stderr or to log files);
* no-op jobs with a small JSON payload (``{"i": 1}``, as our own benchmark uses);
* worker processes are the peer's real worker CLI (``pgq run``, ``procrastinate worker``),
  each in a session of its own, killed if this process dies (``PR_SET_PDEATHSIG``), ending
  itself at a deadline, and stopped (SIGTERM, then SIGKILL) however the command ends;
* every command is bounded by ``--timeout``;
* throughput runs from the first job finished to the last, both read from the peer's own
  tables (PostgreSQL's clock), so that neither worker start-up nor the polling interval
  counts; start-up is reported apart;
* PostgreSQL's CPU time is read from ``/proc`` (the postmaster, its reaped children and its
  live ones), so it is reported only when the server runs on this machine, as it does here;
* percentiles are nearest-rank on ``round(q * (n - 1))``, as in ``benchmarks/bench.py``.

Runs in the peers' virtualenv; it imports nothing from our project.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import uvloop

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence

PEERS_DIR = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
PAYLOAD: dict[str, int] = {"i": 1}
PAYLOAD_BYTES = json.dumps(PAYLOAD).encode()
#: How long a stopped worker gets to exit on its own before it is killed.
STOP_GRACE_S = 10.0
#: Interval between two looks at the peer's table while waiting for jobs to finish. It does
#: not bound the measurement's precision (the instants come from the peer's tables).
POLL_S = 0.25
_PR_SET_PDEATHSIG = 1

T = TypeVar("T")


# -- output --------------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(result: dict[str, Any]) -> None:
    """Write the command's one JSON object to stdout."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def rounded(value: float, digits: int = 3) -> float:
    return round(value, digits)


# -- event loop and deadlines --------------------------------------------------------------


def run(main: Coroutine[Any, Any, T], *, timeout_s: float, loop: str = "uvloop") -> T:
    """Run ``main`` on the chosen loop, cancelled after ``timeout_s`` (and the process ended
    by SIGALRM a little later should cancellation not be enough). SIGTERM, SIGALRM and
    Ctrl-C unwind the stack, so that worker processes are always stopped."""

    def _stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGALRM, _stop)
    signal.alarm(int(timeout_s) + 30)

    async def bounded() -> T:
        try:
            return await asyncio.wait_for(main, timeout_s)
        except TimeoutError:
            raise SystemExit(f"timed out after {timeout_s:.0f} s") from None

    try:
        return uvloop.run(bounded()) if loop == "uvloop" else asyncio.run(bounded())
    finally:
        signal.alarm(0)


# -- databases -----------------------------------------------------------------------------


def with_database(dsn: str, dbname: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + dbname))


async def create_database(admin_dsn: str, prefix: str) -> str:
    """Create an empty database next to ``admin_dsn``'s and return its DSN."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(admin_dsn, name)


async def drop_database(admin_dsn: str, dsn: str) -> None:
    name = urlsplit(dsn).path.lstrip("/")
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def ensure_empty(dsn: str, count_sql: str) -> None:
    """Refuse a database that already holds jobs: every measurement needs a fresh one."""
    conn = await asyncpg.connect(dsn)
    try:
        if found := await conn.fetchval(count_sql):
            raise SystemExit(f"expected a freshly set-up database, found {found} jobs in it")
    finally:
        await conn.close()


def _parent_of(pid: int) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[1])
    return None


async def postmaster_pid(conn: asyncpg.Connection) -> int | None:
    """The server's postmaster (the parent of our backend), if it runs on this machine."""
    backend: int = await conn.fetchval("SELECT pg_backend_pid()")
    return _parent_of(backend)


def postgres_cpu_s(pid: int | None) -> float | None:
    """CPU seconds used by PostgreSQL so far: the postmaster, its reaped children and its
    live ones (from /proc, so Linux and a local server only)."""
    if pid is None or not Path(f"/proc/{pid}").exists():
        return None
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            ppid, utime, stime, cutime, cstime = (int(fields[i]) for i in (1, 11, 12, 13, 14))
            if int(stat.parent.name) == pid:
                total += utime + stime + cutime + cstime
            elif ppid == pid:
                total += utime + stime
    return total / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    """CPU seconds of our reaped child processes (the workers, once stopped)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuMeter:
    """PostgreSQL's and the workers' CPU time over a stretch of a run, per job."""

    pid: int | None
    pg_start: float | None = None
    workers_start: float = 0.0
    per_job: dict[str, float | None] = field(default_factory=dict)

    @classmethod
    async def for_server(cls, conn: asyncpg.Connection) -> CpuMeter:
        return cls(await postmaster_pid(conn))

    def start(self) -> None:
        self.pg_start = postgres_cpu_s(self.pid)
        self.workers_start = children_cpu_s()

    def stop_db(self, jobs: int) -> float | None:
        end = postgres_cpu_s(self.pid)
        db = None if end is None or self.pg_start is None else end - self.pg_start
        self.per_job["db_cpu_us_per_job"] = None if db is None else rounded(db / jobs * 1e6, 1)
        return self.per_job["db_cpu_us_per_job"]

    def stop_workers(self, jobs: int) -> None:
        """Call once the workers have been reaped."""
        spent = children_cpu_s() - self.workers_start
        self.per_job["worker_cpu_us_per_job"] = rounded(spent / jobs * 1e6, 1) if spent else None


# -- worker processes ----------------------------------------------------------------------


@dataclass
class Workers:
    """Running worker processes and the files their output goes to."""

    procs: list[subprocess.Popen[bytes]]
    logs: list[Path]

    def check_alive(self) -> None:
        for proc, path in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"worker {proc.args!r} exited with {proc.returncode}:\n{tail(path)}"
                )


def tail(path: Path, chars: int = 3000) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-chars:]
    return ""


@contextlib.contextmanager
def worker_processes(
    argv: list[str], count: int, env: dict[str, str], lifetime_s: float
) -> Iterator[Workers]:
    """Start ``count`` copies of ``argv`` and stop them all on the way out, whatever happens.

    Each runs in a session of its own (so SIGTERM reaches whatever it starts), learns our
    pid and its deadline from the environment (see :func:`worker_safeguards`) and writes to
    a temporary log, shown when a worker fails.
    """
    logdir = Path(tempfile.mkdtemp(prefix="peer-workers-"))
    full_env = {
        **os.environ,
        **env,
        "PYTHONPATH": str(PEERS_DIR),
        "BENCH_PEER_PARENT_PID": str(os.getpid()),
        "BENCH_PEER_WORKER_DEADLINE": str(time.time() + lifetime_s),
    }
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    try:
        for n in range(count):
            path = logdir / f"worker-{n}.log"
            logs.append(path)
            with path.open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        argv,
                        env=full_env,
                        cwd=PEERS_DIR,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        yield Workers(procs, logs)
    finally:
        stop_processes(procs)
        for path in logs:
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            logdir.rmdir()


def stop_processes(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each process group, wait up to STOP_GRACE_S, then SIGKILL what is left."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def worker_safeguards() -> None:
    """In a worker process the benchmark started (a no-op elsewhere): be killed if the
    benchmark dies (Linux's PR_SET_PDEATHSIG), and exit at the deadline it set."""
    parent = os.environ.get("BENCH_PEER_PARENT_PID")
    deadline = os.environ.get("BENCH_PEER_WORKER_DEADLINE")
    if parent is None or deadline is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != int(parent):  # the benchmark died before we could ask
        os._exit(125)
    timer = threading.Timer(max(0.0, float(deadline) - time.time()), os._exit, args=(124,))
    timer.daemon = True
    timer.start()


def record_latency(i: int, enqueued_at: float, started: float) -> None:
    """In a worker's handler: append ``i`` and enqueue-to-start milliseconds (``started``
    being the handler's first time.time()) to the file named by BENCH_PEER_LATENCY_FILE."""
    path = os.environ.get("BENCH_PEER_LATENCY_FILE")
    if path:
        with Path(path).open("a") as out:
            out.write(f"{i} {(started - enqueued_at) * 1000:.3f}\n")


def read_latencies(path: Path) -> dict[int, float]:
    found: dict[int, float] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                found[int(parts[0])] = float(parts[1])
    return found


# -- the measurements ----------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessRun:
    """The ``process`` command's options that every peer shares."""

    dsn: str
    jobs: int
    procs: int
    analyze: bool
    timeout_s: float

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ProcessRun:
        return cls(args.dsn, args.jobs, args.procs, args.analyze, args.timeout)


@dataclass(frozen=True)
class DrainSpec:
    """A ``process`` run: how many jobs, how many worker processes, which worker."""

    jobs: int
    procs: int
    argv: list[str]
    env: dict[str, str]
    live_sql: str  # is any job still waiting or running (polled while they run: cheap)
    count_done_sql: str  # how many jobs have finished (read once the queue is drained)
    done_instants_sql: str  # one timestamptz ``at`` per finished job
    timeout_s: float


@dataclass(frozen=True)
class Completions:
    """Completion instants read back from the peer's own tables (PostgreSQL's clock)."""

    first: float
    last: float
    at_first: int
    total: int


async def drain(dsn: str, spec: DrainSpec) -> dict[str, Any]:
    """Start the workers on a filled queue, wait until all jobs are done, stop the workers,
    and measure throughput from the first completion to the last (see :func:`throughput`)
    and CPU time per job."""
    conn = await asyncpg.connect(dsn)
    try:
        # As benchmarks/bench.py does before each of our runs: start right after a checkpoint,
        # so that none falls due (after the fill's WAL, or on the 5-minute timer) mid-run.
        await conn.execute("CHECKPOINT")
        cpu = await CpuMeter.for_server(conn)
        cpu.start()
        spawned_at = time.time()
        with worker_processes(spec.argv, spec.procs, spec.env, spec.timeout_s + 60) as workers:
            await wait_for_completions(conn, spec, workers)
            cpu.stop_db(spec.jobs)
        cpu.stop_workers(spec.jobs)
        done = await read_completions(conn, spec.done_instants_sql)
    finally:
        await conn.close()
    if done.total != spec.jobs:
        raise RuntimeError(f"{done.total} completions recorded for {spec.jobs} jobs")
    return {**throughput(done, spawned_at), **cpu.per_job}


async def wait_for_completions(conn: asyncpg.Connection, spec: DrainSpec, workers: Workers) -> None:
    """Poll ``spec.live_sql`` every POLL_S until no job is left, then ``spec.count_done_sql``
    until every job's completion is recorded. While the workers run, the harness only asks
    the cheap question: a count over a growing table each look would be load of its own,
    measured as the peer's."""
    deadline = time.monotonic() + spec.timeout_s
    done = 0
    while time.monotonic() < deadline:
        if not await conn.fetchval(spec.live_sql):
            done = await conn.fetchval(spec.count_done_sql)
            if done >= spec.jobs:
                return
        workers.check_alive()
        await asyncio.sleep(POLL_S)
    raise RuntimeError(f"only {done} of {spec.jobs} jobs done after {spec.timeout_s:.0f} s")


async def read_completions(conn: asyncpg.Connection, instants_sql: str) -> Completions:
    row = await conn.fetchrow(
        f"""
        WITH done AS ({instants_sql})
        SELECT extract(epoch FROM min(at))::float8 AS first,
               extract(epoch FROM max(at))::float8 AS last,
               count(*) FILTER (WHERE at = (SELECT min(at) FROM done)) AS at_first,
               count(*) AS total
        FROM done
        """
    )
    if row is None or row["first"] is None:
        raise RuntimeError("no completions recorded")
    return Completions(row["first"], row["last"], row["at_first"], row["total"])


def throughput(completions: Completions, spawned_at: float) -> dict[str, Any]:
    """Jobs/s from the first completion to the last: the jobs finished after the first
    completion instant (a batch, for a peer that acknowledges in batches), over the time
    from it to the last. Start-up (spawn to first completion) is reported apart. With too
    few jobs for that (all finished at one instant), from the workers' spawn instead."""
    seconds = completions.last - completions.first
    after_first = completions.total - completions.at_first
    with_startup = max(completions.last - spawned_at, 1e-6)
    timed = after_first > 0 and seconds > 0
    return {
        "jobs_per_s": rounded(
            after_first / seconds if timed else completions.total / with_startup, 1
        ),
        "seconds": rounded(seconds if timed else with_startup),
        "timing": "first-completion-to-last" if timed else "spawn-to-last (too few jobs)",
        "startup_s": rounded(completions.first - spawned_at),
        "seconds_incl_startup": rounded(with_startup),
        "jobs_per_s_incl_startup": rounded(completions.total / with_startup, 1),
    }


async def concurrent_enqueues(
    clients: int, jobs: int, enqueue: Callable[[int], Awaitable[object]]
) -> dict[str, Any]:
    """``jobs`` calls of ``enqueue(client)`` shared by ``clients`` coroutines, each call
    timed; the wall time covers them all."""
    remaining = iter(range(jobs))
    latencies: list[float] = []

    async def client(c: int) -> None:
        for _ in remaining:
            started = time.perf_counter()
            await enqueue(c)
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    wall = time.perf_counter() - started
    return {
        "jobs_per_s": rounded(jobs / wall, 1),
        "p50_ms": rounded(percentile(latencies, 0.50)),
        "p99_ms": rounded(percentile(latencies, 0.99)),
        "seconds": rounded(wall),
    }


async def bulk_enqueues(
    clients: int, jobs: int, batch: int, enqueue: Callable[[int, int], Awaitable[object]]
) -> dict[str, Any]:
    """``enqueue(client, n)`` of ``batch`` jobs at a time (fewer for the last call) until
    ``jobs`` are in, shared by ``clients`` coroutines; jobs/s over the wall time."""
    calls = iter(range(0, jobs, batch))

    async def client(c: int) -> None:
        for start in calls:
            await enqueue(c, min(batch, jobs - start))

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    wall = time.perf_counter() - started
    return {"jobs_per_s": rounded(jobs / wall, 1), "seconds": rounded(wall)}


async def sequential_enqueues(
    calls: int, enqueue: Callable[[], Awaitable[object]], warm_up: int = 20
) -> dict[str, Any]:
    """A lone caller: ``calls`` calls of ``enqueue()`` one after another, never two at once,
    each timed (after ``warm_up`` untimed ones). What a script or a request handler that
    enqueues one job and waits sees."""
    for _ in range(warm_up):
        await enqueue()
    latencies: list[float] = []
    started = time.perf_counter()
    for _ in range(calls):
        call_started = time.perf_counter()
        await enqueue()
        latencies.append((time.perf_counter() - call_started) * 1000)
    wall = time.perf_counter() - started
    return {
        "calls": calls,
        "p50_ms": rounded(percentile(latencies, 0.50)),
        "p99_ms": rounded(percentile(latencies, 0.99)),
        "mean_ms": rounded(wall / calls * 1000),
    }


@dataclass(frozen=True)
class MixedSpec:
    """The producers of a ``mixed`` run: ``clients`` callers of ``single(client)`` in a
    closed loop, and one caller of ``batch()`` (``batch_jobs`` jobs) every ``interval_s``,
    all for ``seconds``. The workers run meanwhile (started by the caller)."""

    seconds: float
    clients: int
    single: Callable[[int], Awaitable[object]]
    batch_jobs: int
    interval_s: float
    batch: Callable[[], Awaitable[object]]


async def mixed_producers(spec: MixedSpec) -> dict[str, Any]:
    """Run the producers of ``spec``; return what they enqueued and their call latencies.
    The batch caller keeps its pace until the time is over; when a call takes longer than
    the interval, the next starts at once (no catching up)."""
    until = time.perf_counter() + spec.seconds
    singles: list[float] = []
    batches: list[float] = []

    async def single_client(c: int) -> None:
        while time.perf_counter() < until:
            started = time.perf_counter()
            await spec.single(c)
            singles.append((time.perf_counter() - started) * 1000)

    async def batch_client() -> None:
        next_at = time.perf_counter()
        while next_at < until:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            started = time.perf_counter()
            await spec.batch()
            batches.append((time.perf_counter() - started) * 1000)
            next_at = max(next_at + spec.interval_s, time.perf_counter())

    await asyncio.gather(*(single_client(c) for c in range(spec.clients)), batch_client())
    return {
        "single_enqueued": len(singles),
        "single_p50_ms": rounded(percentile(singles, 0.50)),
        "single_p99_ms": rounded(percentile(singles, 0.99)),
        "batch_enqueued": len(batches) * spec.batch_jobs,
        "batch_calls": len(batches),
        "batch_p50_ms": rounded(percentile(batches, 0.50)),
        "batch_p99_ms": rounded(percentile(batches, 0.99)),
    }


@dataclass(frozen=True)
class LatencySpec:
    """A ``latency`` run: the idle worker, and how to enqueue one job carrying its number
    and the time.time() at which its enqueue was issued."""

    jobs: int
    interval_s: float
    argv: list[str]
    env: dict[str, str]
    enqueue: Callable[[int, float], Awaitable[object]]
    warm_up_jobs: int = 5


async def latency(spec: LatencySpec) -> dict[str, Any]:
    """Start one worker, warm it up with jobs numbered below zero and let it fall idle;
    then enqueue ``spec.jobs`` jobs one at a time, ``spec.interval_s`` apart, and collect
    what the handler recorded (its time.time() on entry minus the job's)."""
    with tempfile.TemporaryDirectory(prefix="peer-latency-") as tmp:
        latency_file = Path(tmp) / "latencies.txt"
        env = {**spec.env, "BENCH_PEER_LATENCY_FILE": str(latency_file)}
        with worker_processes(spec.argv, 1, env, 300) as workers:
            for n in range(1, spec.warm_up_jobs + 1):
                await spec.enqueue(-n, time.time())
            await _wait_reported(latency_file, workers, spec.warm_up_jobs, negative=True)
            await asyncio.sleep(1.0)  # idle: whatever follows a burst has settled
            for i in range(spec.jobs):
                await spec.enqueue(i, time.time())
                await asyncio.sleep(spec.interval_s)
            values = await _wait_reported(latency_file, workers, spec.jobs, negative=False)
    return {
        "p50_ms": rounded(percentile(values, 0.50)),
        "p95_ms": rounded(percentile(values, 0.95)),
        "p99_ms": rounded(percentile(values, 0.99)),
        "max_ms": rounded(max(values)),
        "jobs": spec.jobs,
        "interval_ms": spec.interval_s * 1000,
        "measured": "handler's time.time() on entry minus time.time() when the enqueue"
        " call was issued (one clock: this machine's)",
    }


async def _wait_reported(
    path: Path, workers: Workers, count: int, *, negative: bool, timeout_s: float = 60.0
) -> list[float]:
    deadline = time.monotonic() + timeout_s
    seen: list[float] = []
    while time.monotonic() < deadline:
        seen = [ms for i, ms in read_latencies(path).items() if (i < 0) == negative]
        if len(seen) >= count:
            return seen
        workers.check_alive()
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the worker reported {len(seen)} of {count} jobs within {timeout_s} s")


# -- command line --------------------------------------------------------------------------


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _add_common(p: argparse.ArgumentParser, timeout_s: float) -> None:
    p.add_argument("--dsn", required=True, help="PostgreSQL DSN of the database to use")
    p.add_argument(
        "--timeout", type=float, default=timeout_s, help=f"bound, seconds (default {timeout_s:g})"
    )
    p.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="event loop of this (client) process (default uvloop)",
    )


def build_parser(
    description: str, extra: dict[str, tuple[str, float]] | None = None
) -> tuple[argparse.ArgumentParser, dict[str, Any]]:
    """The command line every peer script shares: setup, enqueue-single, enqueue-bulk,
    process, latency and sweep, with their common options, plus ``extra`` commands of the
    peer's own (name: help, timeout in seconds). Returns the parser and the subcommands'
    parsers by name, for each peer to add its own options."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    cmds: dict[str, argparse.ArgumentParser] = {}

    p = cmds["setup"] = sub.add_parser("setup", help="install the peer's schema")
    _add_common(p, 120)

    p = cmds["enqueue-single"] = sub.add_parser(
        "enqueue-single", help="single-job enqueues from concurrent clients"
    )
    _add_common(p, 300)
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=64, help="concurrent clients")

    p = cmds["enqueue-bulk"] = sub.add_parser(
        "enqueue-bulk", help="bulk enqueues through the peer's batch API"
    )
    _add_common(p, 300)
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=1000, help="jobs per call")
    p.add_argument("--clients", type=int, default=1, help="concurrent callers (default 1)")

    p = cmds["process"] = sub.add_parser(
        "process", help="drain pre-enqueued no-op jobs with worker processes"
    )
    _add_common(p, 900)
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--procs", type=int, default=1, help="worker processes")
    p.add_argument(
        "--no-analyze",
        dest="analyze",
        action="store_false",
        help="skip the ANALYZE after the fill (the planner then sees an empty table)",
    )

    p = cmds["latency"] = sub.add_parser(
        "latency", help="enqueue-to-start latency with an idle worker"
    )
    _add_common(p, 120)
    p.add_argument("--jobs", type=int, default=200)
    p.add_argument("--interval-ms", type=float, default=20.0)

    p = cmds["sweep"] = sub.add_parser(
        "sweep", help="`process` over a grid of settings, each in a fresh database"
    )
    _add_common(p, 3600)
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--procs", type=int_list, default=[1, 2], help="e.g. 1,2")
    p.add_argument("--run-timeout", type=float, default=900, help="bound of each run, seconds")
    p.add_argument("--repeat", type=int, default=1, help="runs of each setting; the best counts")

    for name, (summary, timeout_s) in (extra or {}).items():
        p = cmds[name] = sub.add_parser(name, help=summary)
        _add_common(p, timeout_s)
    return parser, cmds


# -- sweep ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepSpec:
    """``script process`` at each grid point (options by name), ``repeat`` times."""

    script: Path
    peer: str
    admin_dsn: str
    grid: list[dict[str, int | str]]
    jobs: int
    run_timeout_s: float
    repeat: int = 1


async def sweep(spec: SweepSpec) -> dict[str, Any]:
    """Run every grid point ``spec.repeat`` times, each in a fresh database created next to
    ``spec.admin_dsn`` (set up, measured, dropped); keep the best jobs/s for each process
    count. A failed run is listed with its error and does not stop the sweep."""
    runs: list[dict[str, Any]] = []
    for point in [p for p in spec.grid for _ in range(max(1, spec.repeat))]:
        dsn = await create_database(spec.admin_dsn, f"peersweep_{spec.peer}")
        try:
            runs.append(await _sweep_point(spec, dsn, point))
        finally:
            await drop_database(spec.admin_dsn, dsn)
    best: dict[str, Any] = {}
    for result in runs:
        key = str(result["procs"])
        if "jobs_per_s" in result and (
            key not in best or result["jobs_per_s"] > best[key]["jobs_per_s"]
        ):
            best[key] = result
    return {"workload": "sweep", "best_by_procs": best, "runs": runs}


async def _sweep_point(spec: SweepSpec, dsn: str, point: dict[str, int | str]) -> dict[str, Any]:
    options = [f"--{k.replace('_', '-')}={v}" for k, v in point.items()]
    steps = {
        "setup": [],
        "process": [f"--jobs={spec.jobs}", *options, f"--timeout={spec.run_timeout_s}"],
    }
    out = b""
    for command, extra in steps.items():
        log(f"sweep: {command} {' '.join(extra)}")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(spec.script),
            command,
            f"--dsn={dsn}",
            *extra,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), spec.run_timeout_s + 60)
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                await proc.wait()
        if proc.returncode != 0:
            return {**point, "error": f"{command} exited with {proc.returncode}"}
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    log(f"sweep:   -> {result['jobs_per_s']} jobs/s")
    return result
