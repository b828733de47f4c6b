"""The soak: producers and workers at a steady fraction of peak for half an hour, retention on.

What it answers is whether the ``jobs`` table and its indexes stay the same size once retention
deletes finished jobs as fast as they are made, with autovacuum left to its settings (migration
0003): the bloat Postgres queues are known for shows only after many minutes of churn.

1. Peak, on a fresh database: for ``SOAK_WARMUP_S`` (60 s) the producers keep 50,000 jobs
   pending while the soak's worker processes run them; the attempts ended per second from 10 s
   in is the peak: what this machine does with producers, workers and PostgreSQL sharing it
   (``SOAK_PEAK``, in jobs/s, skips the measurement).
2. Soak, on another fresh database: ``SOAK_PRODUCERS`` producers enqueue in small bulk calls
   (``Queue.enqueue_many`` every 100 ms) at ``SOAK_RATE_FRACTION`` of that peak; 2 % of the
   jobs fail (``fail``, two attempts: one retry), 1 % are scheduled an hour ahead and cancelled
   at once; the rest are ``noop``. The same real ``queue-worker`` processes run them, with
   retention at short ages (completed and cancelled after 60 s, failed after 120 s, a round
   every 10 s) so that it is at work within the first minutes.
3. Every ``SOAK_REPORT_S`` (a minute), a row: enqueued, completed and failed per second (the
   producers' count; the workers' ``queue_worker_jobs_finished_total``), rows retention
   deleted, the pending backlog, ``pg_total_relation_size`` / ``pg_relation_size`` /
   ``pg_indexes_size`` of ``jobs``, live and dead tuples and autovacuum runs
   (``pg_stat_user_tables``), and the enqueue-to-start latency p50/p99 of the no-op jobs that
   completed in that minute (``started_at - created_at``, both PostgreSQL's clock; read every
   10 s, before retention may delete a row). Per-index sizes are printed at the end.
4. A verdict: the sizes of the last minutes against those right after retention caught up
   (the longest retention plus two rounds): flat when within 10 %.

Figures are printed (rows as a Markdown table, for docs/how-to/tune-throughput.md) and written as
JSON to benchmarks/results/soak.json; nothing is asserted. Settings from the environment or flags:

    make soak                                   # SOAK_MINUTES=30, about 32 minutes
    SOAK_MINUTES=5 SOAK_RATE_FRACTION=0.8 make soak
    uv run python benchmarks/soak.py --minutes 0.2 --report-seconds 5 --warmup-seconds 10
"""

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench import RESULTS, Bench, machine, percentile, processes, wait_http, worker_env
from queue_core.db import create_pool
from queue_core.jobs import NewJob
from queue_core.queue import Queue
from queue_devtools.pgcluster import temporary_cluster

# Within this much of the size right after retention caught up, a size is flat (issue 15).
FLAT_WITHIN = 0.10
# Minutes averaged at each end of the comparison, fewer on a short run.
VERDICT_WINDOW = 3
# How often producers enqueue: a bulk call every tick keeps the rate smooth without one
# statement per job.
TICK_S = 0.1
# The warm-up that measures the peak keeps about this many jobs pending, enqueued without a
# pause in calls of at most MAX_BATCH: enough that no worker waits between two top-ups (a
# worker alone runs 20,000 no-op jobs a second), and the claim reads a partial index of pending
# jobs only, so the backlog does not slow it.
PEAK_BACKLOG = 50_000
MAX_BATCH = 5_000
# Worker start-up and the first claims are not the peak: counted from this far in.
PEAK_SETTLE_S = 10.0
# How often the latency of the jobs completed since the last look is read: well within the
# completed jobs' retention, so that retention has deleted none of them yet.
LATENCY_SAMPLE_S = 10.0


@dataclass(frozen=True)
class Settings:
    minutes: float
    rate_fraction: float
    peak: float | None
    warmup_s: float
    workers: int
    concurrency: int
    producers: int
    report_s: float
    fail_fraction: float
    cancel_fraction: float
    retention_completed_s: float
    retention_failed_s: float
    retention_cancelled_s: float
    retention_interval_s: float
    out: Path

    def catch_up_s(self, naptime_s: float) -> float:
        """When the space of the rows retention deletes is used again: retention has deleted
        everything older than its longest age (that age, plus two rounds: a round's interval
        varies by ±25 %), and two autovacuums have run since (``naptime_s`` apart at best):
        the first makes the heap's dead rows and the indexes' entries free space, and a
        B-tree page it empties can be used again only after the next one. Until then the
        sizes climb to their working size; the 30-minute run took about 5 minutes."""
        ages = (self.retention_completed_s, self.retention_failed_s, self.retention_cancelled_s)
        return max(ages) + 2 * self.retention_interval_s + 2 * naptime_s

    def worker_env(self, url: str) -> dict[str, str]:
        return {
            **worker_env(url, self.concurrency),
            "WORKER_RETENTION_COMPLETED_S": f"{self.retention_completed_s:g}",
            "WORKER_RETENTION_FAILED_S": f"{self.retention_failed_s:g}",
            "WORKER_RETENTION_CANCELLED_S": f"{self.retention_cancelled_s:g}",
            "WORKER_RETENTION_INTERVAL_S": f"{self.retention_interval_s:g}",
        }


@dataclass
class Tally:
    """What the producers have done so far."""

    enqueued: int = 0
    cancelled: int = 0


@dataclass
class Row:
    """One report interval."""

    minute: float
    enqueued_per_s: float
    completed_per_s: float
    failed_per_s: float
    cancelled_per_s: float
    deleted: int
    pending: int
    total_mb: float
    heap_mb: float
    indexes_mb: float
    live: int
    dead: int
    autovacuums: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    index_mb: dict[str, float] = field(default_factory=dict)


# -- producers -----------------------------------------------------------------------------


def _share(fraction: float, before: int, after: int) -> int:
    """How many of jobs number ``before`` to ``after`` get a kind making up ``fraction`` of
    all: deterministic, and exact over the run."""
    return int(fraction * after) - int(fraction * before)


async def produce(
    url: str, rate: float | None, until: float, settings: Settings, tally: Tally
) -> None:
    """Enqueue the soak's mix until ``until``: ``rate`` jobs/s, or with ``rate`` None as
    fast as the workers take them (the backlog topped up to :data:`PEAK_BACKLOG`)."""
    pool = await create_pool(url, max_size=2)
    queue = Queue(pool)
    started = time.monotonic()
    sent = 0
    try:
        while (now := time.monotonic()) < until:
            if rate is None:
                due = min(PEAK_BACKLOG - await pool.fetchval(PENDING_SQL), MAX_BATCH)
            else:
                due = min(int(rate * (now - started)) - sent, MAX_BATCH)
            if due > 0:
                await enqueue_mix(queue, sent, due, settings, tally)
                sent += due
            if rate is not None or due <= 0:
                await asyncio.sleep(TICK_S)
    finally:
        await pool.close()


async def enqueue_mix(queue: Queue, sent: int, due: int, settings: Settings, tally: Tally) -> None:
    fails = _share(settings.fail_fraction, sent, sent + due)
    cancels = _share(settings.cancel_fraction, sent, sent + due)
    jobs = [NewJob(type="noop", payload={"n": sent})] * (due - fails - cancels)
    jobs += [NewJob(type="fail", payload={"n": sent}, max_attempts=2)] * fails
    await queue.enqueue_many(jobs)
    if cancels:
        later = datetime.now(UTC) + timedelta(hours=1)
        doomed = [NewJob(type="noop", payload={"n": sent}, scheduled_at=later)]
        tally.cancelled += await queue.cancel_many(await queue.enqueue_many(doomed * cancels))
    tally.enqueued += due


async def measure_peak(url: str, settings: Settings, ports: Sequence[str]) -> float:
    """Attempts ended per second by the workers while the producers keep a backlog, from
    :data:`PEAK_SETTLE_S` into the warm-up to its end: the most this machine does with
    producers, workers and PostgreSQL sharing it."""
    until = time.monotonic() + settings.warmup_s
    tally = Tally()
    producers = [
        asyncio.create_task(produce(url, None, until, settings, tally))
        for _ in range(settings.producers)
    ]
    async with httpx.AsyncClient(timeout=10) as http:
        await asyncio.sleep(min(PEAK_SETTLE_S, settings.warmup_s / 3))
        before, started = await worker_counters(http, ports), time.monotonic()
        await asyncio.gather(*producers)
        after, seconds = await worker_counters(http, ports), time.monotonic() - started
    ended = sum(v - before.get(k, 0.0) for k, v in after.items() if k.startswith("outcome:"))
    return ended / seconds


# -- what is measured ----------------------------------------------------------------------

PENDING_SQL = "SELECT count(*) FROM jobs WHERE status = 'pending'"
TABLE_SQL = f"""
SELECT pg_total_relation_size('jobs') AS total, pg_relation_size('jobs') AS heap,
       pg_indexes_size('jobs') AS indexes, n_live_tup, n_dead_tup, autovacuum_count,
       ({PENDING_SQL}) AS pending
FROM pg_stat_user_tables WHERE relname = 'jobs'
"""
INDEXES_SQL = """
SELECT indexrelname AS name, pg_relation_size(indexrelid) AS bytes
FROM pg_stat_user_indexes WHERE relname = 'jobs' ORDER BY indexrelname
"""
# Enqueue-to-start of the first attempts of no-op jobs completed in ($1, $2]: both instants
# are PostgreSQL's now() (the enqueue's and the claim's transactions).
LATENCY_SQL = """
SELECT extract(epoch FROM started_at - created_at)::float8 * 1000
FROM jobs
WHERE finished_at > $1 AND finished_at <= $2 AND status = 'completed' AND type = 'noop'
  AND attempts = 1
"""


async def worker_counters(http: httpx.AsyncClient, ports: Sequence[str]) -> dict[str, float]:
    """The workers' finished attempts by outcome and retention's deleted rows, summed over
    the worker processes (``outcome:completed``, ``deleted:failed``, ...)."""
    totals: dict[str, float] = {}
    wanted = {
        "queue_worker_jobs_finished_total": "outcome",
        "queue_worker_retention_deleted_total": "status",
    }
    for port in ports:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if (label := wanted.get(sample.name)) is not None:
                    prefix = "outcome" if label == "outcome" else "deleted"
                    key = f"{prefix}:{sample.labels[label]}"
                    totals[key] = totals.get(key, 0.0) + sample.value
    return totals


@dataclass
class Monitor:
    conn: asyncpg.Connection
    http: httpx.AsyncClient
    ports: Sequence[str]
    tally: Tally
    started: float
    last_look: datetime
    latencies: list[float] = field(default_factory=list)
    counters: dict[str, float] = field(default_factory=dict)
    enqueued: int = 0
    cancelled: int = 0
    at: float = 0.0

    async def sample_latency(self) -> None:
        now: datetime = await self.conn.fetchval("SELECT now()")
        values = await self.conn.fetch(LATENCY_SQL, self.last_look, now)
        self.latencies += [float(v[0]) for v in values]
        self.last_look = now

    async def row(self) -> Row:
        await self.sample_latency()
        now = time.monotonic()
        seconds = max(now - (self.at or self.started), 1e-6)
        counters = await worker_counters(self.http, self.ports)

        def delta(key: str) -> float:
            return counters.get(key, 0.0) - self.counters.get(key, 0.0)

        table = await self.conn.fetchrow(TABLE_SQL)
        if table is None:
            raise RuntimeError("no statistics for the jobs table")
        indexes = await self.conn.fetch(INDEXES_SQL)
        latencies, self.latencies = self.latencies, []
        row = Row(
            minute=(now - self.started) / 60,
            enqueued_per_s=(self.tally.enqueued - self.enqueued) / seconds,
            completed_per_s=delta("outcome:completed") / seconds,
            failed_per_s=delta("outcome:failed") / seconds,
            cancelled_per_s=(self.tally.cancelled - self.cancelled) / seconds,
            deleted=round(sum(delta(k) for k in counters if k.startswith("deleted:"))),
            pending=table["pending"],
            total_mb=table["total"] / 2**20,
            heap_mb=table["heap"] / 2**20,
            indexes_mb=table["indexes"] / 2**20,
            live=table["n_live_tup"],
            dead=table["n_dead_tup"],
            autovacuums=table["autovacuum_count"],
            latency_p50_ms=statistics.median(latencies) if latencies else None,
            latency_p99_ms=percentile(latencies, 0.99) if latencies else None,
            index_mb={r["name"]: r["bytes"] / 2**20 for r in indexes},
        )
        self.counters, self.enqueued, self.cancelled = (
            counters,
            self.tally.enqueued,
            self.tally.cancelled,
        )
        self.at = now
        return row


HEADER = (
    "| minute | enqueued/s | completed/s | failed/s | cancelled/s | deleted | pending "
    "| total MB | heap MB | indexes MB | live | dead | autovacuums | p50 ms | p99 ms |"
)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def markdown(row: Row) -> str:
    return (
        f"| {row.minute:.1f} | {row.enqueued_per_s:.0f} | {row.completed_per_s:.0f} "
        f"| {row.failed_per_s:.1f} | {row.cancelled_per_s:.1f} | {row.deleted} | {row.pending} "
        f"| {row.total_mb:.1f} | {row.heap_mb:.1f} | {row.indexes_mb:.1f} | {row.live} "
        f"| {row.dead} | {row.autovacuums} | {_ms(row.latency_p50_ms)} "
        f"| {_ms(row.latency_p99_ms)} |"
    )


async def soak(url: str, rate: float, settings: Settings, ports: Sequence[str]) -> list[Row]:
    seconds = settings.minutes * 60
    tally = Tally()
    conn = await asyncpg.connect(url)
    rows: list[Row] = []
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            started = time.monotonic()
            until = started + seconds
            producers = [
                asyncio.create_task(produce(url, rate / settings.producers, until, settings, tally))
                for _ in range(settings.producers)
            ]
            monitor = Monitor(
                conn, http, ports, tally, started, await conn.fetchval("SELECT now()")
            )
            print(HEADER, "\n|" + "---|" * HEADER.count(" | ") + "---|", sep="", flush=True)
            next_report = started + settings.report_s
            while (now := time.monotonic()) < until:
                if now >= next_report:
                    rows.append(await monitor.row())
                    print(markdown(rows[-1]), flush=True)
                    next_report += settings.report_s
                else:
                    step = min(LATENCY_SAMPLE_S, next_report - now, until - now)
                    await asyncio.sleep(step)
                    if time.monotonic() < next_report:
                        await monitor.sample_latency()
            await asyncio.gather(*producers)
            if not rows or rows[-1].minute < settings.minutes - 0.01:
                rows.append(await monitor.row())
                print(markdown(rows[-1]), flush=True)
    finally:
        await conn.close()
    return rows


# -- verdict -------------------------------------------------------------------------------


def verdict(rows: list[Row], settings: Settings, naptime_s: float) -> dict[str, Any]:
    """The sizes of the last minutes against those right after retention caught up."""
    catch_up_s = settings.catch_up_s(naptime_s)
    after = [r for r in rows if r.minute * 60 >= catch_up_s]
    if len(after) < 2:
        return {
            "flat": None,
            "reason": f"too short: retention catches up after {catch_up_s:.0f} s and "
            "two rows after that are needed",
        }
    window = max(1, min(VERDICT_WINDOW, len(after) // 2))
    baseline, last = after[:window], after[-window:]

    def growth(values: list[float], base: list[float]) -> float:
        return statistics.fmean(values) / max(statistics.fmean(base), 1e-9) - 1

    sizes = {
        name: growth([getattr(r, name) for r in last], [getattr(r, name) for r in baseline])
        for name in ("total_mb", "heap_mb", "indexes_mb")
    }
    per_index = {
        name: growth([r.index_mb[name] for r in last], [r.index_mb[name] for r in baseline])
        for name in after[0].index_mb
    }
    # Bounded growth settles: over the run's second half a bounded size barely moves, whereas
    # one that grows without bound grows there too.
    middle = after[len(after) // 2]
    second_half = {
        name: getattr(last[-1], name) / max(getattr(middle, name), 1e-9) - 1
        for name in ("total_mb", "heap_mb", "indexes_mb")
    }
    return {
        "flat": all(g <= FLAT_WITHIN for g in sizes.values()),
        "baseline_minutes": [round(r.minute, 1) for r in baseline],
        "last_minutes": [round(r.minute, 1) for r in last],
        "growth": sizes,
        "index_growth": per_index,
        "second_half_from_minute": round(middle.minute, 1),
        "second_half_growth": second_half,
    }


def print_summary(rows: list[Row], result: dict[str, Any]) -> None:
    names = list(rows[-1].index_mb) if rows else []
    print("\nPer index, MB:")
    print("| minute | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for row in rows:
        cells = " | ".join(f"{row.index_mb.get(n, 0.0):.2f}" for n in names)
        print(f"| {row.minute:.1f} | {cells} |")
    print()
    if result["flat"] is None:
        print(f"verdict: none, {result['reason']}")
        return
    growth = ", ".join(f"{k.removesuffix('_mb')} {v:+.1%}" for k, v in result["growth"].items())
    word = "FLAT" if result["flat"] else "GROWING"
    print(
        f"verdict: {word} ({growth}; minutes {result['last_minutes']} against "
        f"{result['baseline_minutes']}, right after retention caught up; flat = within "
        f"{FLAT_WITHIN:.0%})"
    )
    indexes = ", ".join(f"{k} {v:+.1%}" for k, v in result["index_growth"].items())
    print(f"per index: {indexes}")
    half = ", ".join(
        f"{k.removesuffix('_mb')} {v:+.1%}" for k, v in result["second_half_growth"].items()
    )
    print(f"from minute {result['second_half_from_minute']} to the end: {half}")


# -- main ----------------------------------------------------------------------------------


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def parse_settings(argv: Sequence[str] | None = None) -> tuple[Settings, Path | None]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--minutes", type=float, default=_env_float("SOAK_MINUTES", 30), help="SOAK_MINUTES")
    add("--rate-fraction", type=float, default=_env_float("SOAK_RATE_FRACTION", 0.6),
        help="SOAK_RATE_FRACTION: of the peak, held for the whole soak")  # fmt: skip
    add("--peak", type=float, default=os.environ.get("SOAK_PEAK"),
        help="SOAK_PEAK: the peak in jobs/s, instead of measuring it")  # fmt: skip
    add("--warmup-seconds", type=float, default=_env_float("SOAK_WARMUP_S", 60),
        help="SOAK_WARMUP_S: how long the peak is measured")  # fmt: skip
    add("--workers", type=int, default=int(_env_float("SOAK_WORKERS", 2)), help="SOAK_WORKERS")
    add("--concurrency", type=int, default=int(_env_float("SOAK_CONCURRENCY", 100)),
        help="SOAK_CONCURRENCY: WORKER_CONCURRENCY of each worker")  # fmt: skip
    add("--producers", type=int, default=int(_env_float("SOAK_PRODUCERS", 2)),
        help="SOAK_PRODUCERS")  # fmt: skip
    add("--report-seconds", type=float, default=_env_float("SOAK_REPORT_S", 60),
        help="SOAK_REPORT_S: a row every this many seconds")  # fmt: skip
    add("--fail-fraction", type=float, default=0.02)
    add("--cancel-fraction", type=float, default=0.01)
    add("--retention-completed-s", type=float, default=60.0)
    add("--retention-failed-s", type=float, default=120.0)
    add("--retention-cancelled-s", type=float, default=60.0)
    add("--retention-interval-s", type=float, default=10.0)
    add("--out", type=Path, default=RESULTS / "soak.json")
    add("--reprint", type=Path, help="print the summary and verdict of a run's JSON, and stop")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or not 0 < args.rate_fraction <= 1:
        parser.error("--minutes must be positive and --rate-fraction in (0, 1]")
    return Settings(
        minutes=args.minutes,
        rate_fraction=args.rate_fraction,
        peak=float(args.peak) if args.peak else None,
        warmup_s=args.warmup_seconds,
        workers=args.workers,
        concurrency=args.concurrency,
        producers=args.producers,
        report_s=args.report_seconds,
        fail_fraction=args.fail_fraction,
        cancel_fraction=args.cancel_fraction,
        retention_completed_s=args.retention_completed_s,
        retention_failed_s=args.retention_failed_s,
        retention_cancelled_s=args.retention_cancelled_s,
        retention_interval_s=args.retention_interval_s,
        out=args.out,
    ), args.reprint


@contextlib.contextmanager
def workers(url: str, settings: Settings) -> Iterator[tuple[str, list[str]]]:
    """The soak's worker processes on ``url``, answering; yields it and their metrics ports."""
    envs = [settings.worker_env(url) for _ in range(settings.workers)]
    with processes([("queue-worker", env) for env in envs]):
        ports = [env["WORKER_METRICS_PORT"] for env in envs]
        for port in ports:
            wait_http(f"http://127.0.0.1:{port}/healthz")
        yield url, ports


def describe(s: Settings, rate: float) -> str:
    return (
        f"soak at {rate:.0f} jobs/s ({s.rate_fraction:.0%}) for {s.minutes:g} min, "
        f"{s.workers} workers x {s.concurrency}, {s.producers} producers; retention completed "
        f"{s.retention_completed_s:g} s, failed {s.retention_failed_s:g} s, cancelled "
        f"{s.retention_cancelled_s:g} s, a round every {s.retention_interval_s:g} s"
    )


async def autovacuum_naptime_s(url: str) -> float:
    conn = await asyncpg.connect(url)
    try:
        value: float = await conn.fetchval(
            "SELECT setting::float8 FROM pg_settings WHERE name = 'autovacuum_naptime'"
        )
        return value
    finally:
        await conn.close()


def reprint(path: Path) -> None:
    """The per-index table and the verdict again, from a run's JSON (the verdict of this
    version of the script)."""
    report = json.loads(path.read_text())
    settings = Settings(**{**report["settings"], "out": Path(report["settings"]["out"])})
    rows = [Row(**row) for row in report["rows"]]
    print_summary(rows, verdict(rows, settings, report.get("autovacuum_naptime_s", 60.0)))


def main() -> None:
    # A SIGTERM (kill, a CI timeout) stops it as Ctrl-C does: workers and cluster cleaned up.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    settings, again = parse_settings()
    if again is not None:
        reprint(again)
        return
    report: dict[str, Any] = {"machine": machine(), "settings": asdict(settings)}
    report["settings"]["out"] = str(settings.out)
    with temporary_cluster(durable=True) as cluster:
        bench = Bench(cluster)
        peak = settings.peak
        if peak is None:
            print(f"peak: {settings.warmup_s:g} s unthrottled, on a database of its own")
            with workers(bench.fresh_database(), settings) as (url, ports):
                peak = asyncio.run(measure_peak(url, settings, ports))
        rate = peak * settings.rate_fraction
        print(f"peak {peak:.0f} jobs/s; {describe(settings, rate)}", flush=True)
        # A fresh database again: the warm-up's rows would set a high-water mark that the
        # soak's sizes could sit under however they behave.
        with workers(bench.fresh_database(), settings) as (url, ports):
            naptime_s = asyncio.run(autovacuum_naptime_s(url))
            rows = asyncio.run(soak(url, rate, settings, ports))
    result = verdict(rows, settings, naptime_s)
    print_summary(rows, result)
    report.update(
        peak_jobs_per_s=peak,
        rate_jobs_per_s=rate,
        autovacuum_naptime_s=naptime_s,
        rows=[asdict(r) for r in rows],
    )
    report["verdict"] = result
    settings.out.parent.mkdir(parents=True, exist_ok=True)
    settings.out.write_text(json.dumps(report, indent=2))
    print(f"written to {settings.out}")


if __name__ == "__main__":
    main()
