"""Chaos: workers SIGKILLed about every second and PostgreSQL restarted, and no job is lost.

5,000 jobs; three real ``queue-worker`` processes; every second or so a random worker is frozen
(SIGSTOP, so it claims nothing more while we count), its running jobs are counted, and it is
SIGKILLed and replaced. Once, PostgreSQL itself is restarted (when the tests own the cluster).
At the end every job must be completed, every job must have run, and the duplicate executions
(at-least-once delivery) must not exceed the jobs that were running at the kills.
"""

import asyncio
import os
import random
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict
from urllib.parse import urlsplit

import asyncpg
import pytest

from helpers import Proc
from pg_provider import PgServer
from queue_core.db import create_pool
from queue_core.jobs import NewJob
from queue_core.queue import Queue
from queue_devtools.pgcluster import free_port
from reliability_figures import Scenario, record

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(150)]

JOBS = 5_000
WORKERS = 3
KILL_EVERY_S = 1.0
DEADLINE_S = 110.0
HERE = Path(__file__).parent
OBSERVER = "chaos-observer"  # this test's own connections, spared by the terminations


@dataclass
class Figures:
    kills: int = 0
    running_at_kills: int = 0
    pg_restarts: int = 0
    # A database crash can interrupt the jobs running then, like a kill of every worker.
    running_at_restart: int = 0
    # From the restart's start to the first job completed after it (the report's figure).
    restart_recover_s: float | None = None


def _worker_env(db_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": db_url,
        "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "WORKER_TASKS": "chaos_tasks",
        "WORKER_CONCURRENCY": "16",
        "WORKER_LEASE_S": "2",
        "WORKER_HEARTBEAT_S": "0.5",
        "WORKER_RESCUE_INTERVAL_S": "0.5",
        "WORKER_POLL_INTERVAL_S": "0.2",
        "WORKER_RETRY_BASE_S": "0.1",
        "WORKER_RETRY_CAP_S": "0.5",
        "WORKER_METRICS_PORT": str(free_port()),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
    }


async def _running_jobs_of(pool: asyncpg.Pool, pid: int) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM jobs"
        " WHERE status = 'running' AND split_part(lease_owner, ':', 2) = $1",
        str(pid),
    )
    return count


async def _status_counts(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT status, count(*) AS n FROM jobs GROUP BY status")
    return {r["status"]: r["n"] for r in rows}


class Chaos:
    """Three workers, and the means to kill one the way a crashed node would."""

    def __init__(self, db_url: str, pool: asyncpg.Pool, log_dir: Path, seed: int) -> None:
        self._db_url = db_url
        self._pool = pool
        self._log_dir = log_dir
        self.rng = random.Random(seed)  # noqa: S311 - reproducible chaos, not cryptography
        self.figures = Figures()
        self._spawned = 0
        self.workers = [self._spawn() for _ in range(WORKERS)]
        self.started = time.monotonic()
        self.deadline = self.started + DEADLINE_S

    def _spawn(self) -> Proc:
        self._spawned += 1
        env = _worker_env(self._db_url)
        return Proc(f"worker-{self._spawned}", ["queue-worker"], env, self._log_dir)

    async def kill_one(self) -> None:
        """Freeze a random worker, count the jobs it holds, SIGKILL it, start a replacement."""
        index = self.rng.randrange(len(self.workers))
        victim = self.workers[index]
        victim.signal(signal.SIGSTOP)  # frozen: it claims nothing more while we count
        await asyncio.sleep(0.05)  # statements it already sent commit or fail meanwhile
        try:
            self.figures.running_at_kills += await _running_jobs_of(self._pool, victim.pid)
        finally:
            victim.signal(signal.SIGKILL)
            victim.wait(timeout_s=10)
            victim.stop()
        self.figures.kills += 1
        self.workers[index] = self._spawn()

    def stop_all(self) -> None:
        for proc in self.workers:
            proc.stop()

    def tail_logs(self) -> str:
        return "\n".join(proc.output()[-3000:] for proc in self.workers)


async def _completed(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM jobs WHERE status = 'completed'")
    return count


async def _until_a_job_completes(pool: asyncpg.Pool, since: float, deadline: float) -> float:
    """Seconds from ``since`` until the completed count next grows: how long the system took
    to do work again. Polled every 50 ms, so that is the figure's resolution."""
    before = await _completed(pool)
    while await _completed(pool) == before:
        # A scenario must leave work to do, or no completion can follow: say so, rather than
        # blame the workers for a wait that could never end.
        left = await pool.fetchval("SELECT count(*) FROM jobs WHERE status <> 'completed'")
        assert left > 0, "every job completed before the disruption ended: none left to recover"
        assert time.monotonic() < deadline, "no job completed after the disruption"
        await asyncio.sleep(0.05)
    return time.monotonic() - since


@dataclass(frozen=True)
class Executions:
    total: int
    never_ran: int
    run_twice: int  # jobs with more than one execution
    # From a cut run to the job's next run: the lease running out, the rescue, then the wait
    # behind the backlog. The median and the longest.
    median_rerun_gap_s: float | None
    worst_rerun_gap_s: float | None


async def _executions(pool: asyncpg.Pool) -> Executions:
    total = await pool.fetchval("SELECT count(*) FROM executions")
    never_ran = await pool.fetchval(
        "SELECT count(*) FROM jobs j WHERE NOT EXISTS "
        "(SELECT 1 FROM executions e WHERE e.job_id = j.id)"
    )
    run_twice = await pool.fetchval(
        "SELECT count(*) FROM (SELECT job_id FROM executions GROUP BY job_id"
        " HAVING count(*) > 1) AS repeated"
    )
    gaps = await pool.fetchrow(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s) AS median, max(s) AS worst"
        " FROM (SELECT extract(epoch FROM at - lag(at) OVER (PARTITION BY job_id ORDER BY at))"
        " AS s FROM executions) AS gaps WHERE s IS NOT NULL"
    )
    assert gaps is not None  # an aggregate always answers one row
    median, worst = gaps["median"], gaps["worst"]
    return Executions(
        total,
        never_ran,
        run_twice,
        None if median is None else float(median),
        None if worst is None else float(worst),
    )


def _rerun_gaps(ran: Executions) -> dict[str, float | int | str]:
    if ran.median_rerun_gap_s is None or ran.worst_rerun_gap_s is None:
        return {}
    return {
        "from a cut run to the job's next run, median (s)": round(ran.median_rerun_gap_s, 2),
        "the same, longest, the wait behind the backlog included (s)": round(
            ran.worst_rerun_gap_s, 2
        ),
    }


async def _prepare_database(db_url: str, jobs: int = JOBS) -> None:
    pool = await create_pool(db_url, max_size=1)
    try:
        await _prepare(pool, urlsplit(db_url).path.lstrip("/"), jobs)
    finally:
        await pool.close()


async def _prepare(pool: asyncpg.Pool, dbname: str, jobs: int) -> None:
    # The throwaway test cluster runs with synchronous_commit=off for speed, which loses the
    # last commits when PostgreSQL crashes. Production runs durable; so does this database.
    await pool.execute(f'ALTER DATABASE "{dbname}" SET synchronous_commit = on')
    await pool.execute(
        "CREATE TABLE executions (job_id uuid NOT NULL, pid int NOT NULL, attempt int NOT NULL,"
        " at timestamptz NOT NULL DEFAULT now())"
    )
    await _enqueue(pool, range(jobs))


async def _enqueue(pool: asyncpg.Pool, numbers: range) -> None:
    await Queue(pool).enqueue_many(
        [NewJob(type="chaos_record", payload={"n": n}, max_attempts=25) for n in numbers]
    )


@asynccontextmanager
async def _observed_database(
    db_url: str, jobs: int, max_size: int = 1
) -> AsyncIterator[asyncpg.Pool]:
    """The scenario's database, prepared with ``jobs`` jobs, and this test's own pool on it."""
    await _prepare_database(db_url, jobs)
    pool = await create_pool(db_url, max_size=max_size, application_name=OBSERVER)
    try:
        yield pool
    finally:
        await pool.close()


@asynccontextmanager
async def _workers(
    db_url: str, pool: asyncpg.Pool, log_dir: Path, seed: int
) -> AsyncIterator[Chaos]:
    """The workers (:class:`Chaos`) for the length of the block, stopped after it; the tails of
    their logs printed when the block fails, since they explain the failure."""
    chaos = Chaos(db_url, pool, log_dir, seed)
    try:
        yield chaos
    except BaseException:
        print(chaos.tail_logs())  # noqa: T201 - the logs explain a failure
        raise
    finally:
        chaos.stop_all()


async def _until_all_completed(pool: asyncpg.Pool, jobs: int, deadline: float) -> None:
    while (counts := await _status_counts(pool)).get("completed", 0) < jobs:
        assert time.monotonic() < deadline, f"not done in {DEADLINE_S} s: {counts}"
        await asyncio.sleep(0.2)


class Counted(TypedDict):
    """The figures every scenario reports alike (fields of :class:`Scenario`)."""

    acknowledged: int
    completed: int
    lost: int
    run_twice: int


@dataclass(frozen=True)
class Tally:
    """The jobs and their executions once the workers stopped."""

    jobs: int
    counts: dict[str, int]
    ran: Executions

    def counted(self) -> Counted:
        completed = self.counts.get("completed", 0)
        return Counted(
            acknowledged=self.jobs,
            completed=completed,
            lost=self.jobs - completed + self.ran.never_ran,
            run_twice=self.ran.run_twice,
        )

    def assert_every_job_completed(self) -> None:
        assert self.counts == {"completed": self.jobs}
        assert self.ran.never_ran == 0


async def _tally(pool: asyncpg.Pool, jobs: int) -> Tally:
    ran = await _executions(pool)
    return Tally(jobs, await _status_counts(pool), ran)


def _report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n{line}")  # noqa: T201 - the figures are the test's report


async def test_no_job_is_lost_when_workers_are_killed_and_postgres_restarts(
    db_url: str, pg_server: PgServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with _observed_database(db_url, JOBS, max_size=4) as pool:
        async with _workers(db_url, pool, tmp_path, seed=20261128) as chaos:
            restart_at = chaos.started + 3.0 if pg_server.owns_cluster else None
            while (counts := await _status_counts(pool)).get("completed", 0) < JOBS:
                elapsed = time.monotonic() - chaos.started
                assert elapsed < DEADLINE_S, f"not done in {DEADLINE_S} s: {counts}"
                if restart_at is not None and time.monotonic() >= restart_at:
                    chaos.figures.running_at_restart = counts.get("running", 0)
                    restart_began = time.monotonic()
                    await asyncio.to_thread(pg_server.restart)
                    chaos.figures.pg_restarts += 1
                    restart_at = None
                    chaos.figures.restart_recover_s = await _until_a_job_completes(
                        pool, restart_began, chaos.deadline
                    )
                    continue
                await chaos.kill_one()
                await asyncio.sleep(chaos.rng.uniform(0.5 * KILL_EVERY_S, 1.5 * KILL_EVERY_S))
        seconds = time.monotonic() - chaos.started
        tally = await _tally(pool, JOBS)
    duplicates = tally.ran.total - JOBS
    figures = chaos.figures
    record(
        Scenario(
            key="10-sigkill-loop",
            title="Workers SIGKILLed in a loop, PostgreSQL restarted",
            what=(
                f"{JOBS:,} jobs, {WORKERS} workers (concurrency 16, lease 2 s); a random worker"
                f" SIGKILLed and replaced about every {KILL_EVERY_S:g} s until every job is"
                f" done ({figures.kills} kills), and PostgreSQL restarted"
                f" {figures.pg_restarts} time(s) mid-run (fast shutdown, durable commits)."
            ),
            test="tests/chaos/test_chaos.py::"
            "test_no_job_is_lost_when_workers_are_killed_and_postgres_restarts",
            **tally.counted(),
            recover_s=figures.restart_recover_s,
            recover_what="from PostgreSQL's restart to the next completed job",
            extra={
                **_rerun_gaps(tally.ran),
                "kills": figures.kills,
                "jobs running at the kills": figures.running_at_kills,
                "jobs running at the restart": figures.running_at_restart,
                "extra executions": duplicates,
                "wall time (s)": round(seconds, 1),
            },
        )
    )
    _report(
        capsys,
        f"chaos: jobs={JOBS} workers={WORKERS} kills={figures.kills} "
        f"pg_restarts={figures.pg_restarts} executions={tally.ran.total} "
        f"duplicates={duplicates} running_at_kills={figures.running_at_kills} "
        f"running_at_restart={figures.running_at_restart} "
        f"seconds={seconds:.1f}",
    )
    tally.assert_every_job_completed()
    assert figures.kills >= 3, "the run was too short to be chaos"
    assert 0 <= duplicates <= figures.running_at_kills + figures.running_at_restart


# -- pg_terminate_backend of the queue's connections ---------------------------------------

TERMINATIONS = 5


async def _terminate_queue_backends(pool: asyncpg.Pool) -> int:
    """What an operator's ``pg_terminate_backend`` (or a failover's) does to every connection
    of the workers, their handlers and their LISTEN: cut at once, mid-statement."""
    count: int = await pool.fetchval(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = current_database() AND backend_type = 'client backend'"
        " AND pid <> pg_backend_pid() AND application_name <> $1",
        OBSERVER,
    )
    return count


async def test_no_job_is_lost_when_the_queues_connections_are_terminated(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    terminated: list[int] = []
    recover_s: list[float] = []
    async with _observed_database(db_url, JOBS) as pool:
        async with _workers(db_url, pool, tmp_path, seed=20261205) as chaos:
            deadline = chaos.deadline
            await _until_a_job_completes(pool, chaos.started, deadline)  # the workers are up
            while (counts := await _status_counts(pool)).get("completed", 0) < JOBS:
                assert time.monotonic() < deadline, f"not done in {DEADLINE_S} s: {counts}"
                if len(terminated) < TERMINATIONS:
                    began = time.monotonic()
                    terminated.append(await _terminate_queue_backends(pool))
                    recover_s.append(await _until_a_job_completes(pool, began, deadline))
                    await asyncio.sleep(chaos.rng.uniform(0.5, 1.5))
                else:
                    await asyncio.sleep(0.2)
        seconds = time.monotonic() - chaos.started
        tally = await _tally(pool, JOBS)
    record(
        Scenario(
            key="30-terminate-backends",
            title="pg_terminate_backend of the queue's connections",
            what=(
                f"{JOBS:,} jobs, {WORKERS} workers (concurrency 16, lease 2 s); every connection"
                f" of the workers and their handlers terminated by pg_terminate_backend,"
                f" {TERMINATIONS} times about a second apart, mid-run."
            ),
            test="tests/chaos/test_chaos.py::"
            "test_no_job_is_lost_when_the_queues_connections_are_terminated",
            **tally.counted(),
            recover_s=max(recover_s) if recover_s else None,
            recover_what="longest time from a termination to the next completed job",
            extra={
                **_rerun_gaps(tally.ran),
                "connections terminated": sum(terminated),
                "extra executions": tally.ran.total - JOBS,
                "wall time (s)": round(seconds, 1),
            },
        )
    )
    _report(
        capsys,
        f"terminate: jobs={JOBS} terminations={len(terminated)}"
        f" connections={sum(terminated)} executions={tally.ran.total}"
        f" run_twice={tally.ran.run_twice} recover_s={[round(r, 2) for r in recover_s]}"
        f" seconds={seconds:.1f}",
    )
    tally.assert_every_job_completed()
    assert len(terminated) == TERMINATIONS
    assert all(n > 0 for n in terminated), f"nothing to terminate: {terminated}"


# -- PostgreSQL out of connections ---------------------------------------------------------

HOLD_S = 3.0
# Fewer jobs than the scenarios above: these need a run of a few seconds, not of twenty.
SHORT_JOBS = 2_000
# Enqueued as the slots are given back: the workers may have won back enough connections
# during the hold to finish every earlier job, and the recovery is timed on work still to do.
LATE_JOBS = 200
GRABBERS = 8


async def _take_every_free_connection(db_url: str, held: list[asyncpg.Connection]) -> None:
    """Another client opening connections until PostgreSQL refuses more ("too many clients").
    They are named like this test's own, so the terminations spare them."""
    while True:
        try:
            held.append(
                await asyncpg.connect(
                    db_url, timeout=5, server_settings={"application_name": OBSERVER}
                )
            )
        except asyncpg.TooManyConnectionsError:
            return


async def _keep_every_slot(db_url: str, held: list[asyncpg.Connection], seconds: float) -> None:
    """Take each slot that frees up (the terminated backends' exits), for ``seconds``: the
    queue's processes meet "too many clients" whenever they try to reconnect."""
    until = time.monotonic() + seconds

    async def grab() -> None:
        while time.monotonic() < until:
            await _take_every_free_connection(db_url, held)
            await asyncio.sleep(0.001)

    # Several at once: a slot is taken within a connection attempt of its freeing, before a
    # worker's reconnect (after its 0.1 s backoff) gets to it.
    await asyncio.gather(*(grab() for _ in range(GRABBERS)))


async def _queue_backends(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND backend_type = 'client backend' AND application_name <> $1",
        OBSERVER,
    )
    return count


async def test_no_job_is_lost_when_postgres_is_out_of_connections(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    held: list[asyncpg.Connection] = []
    async with _observed_database(db_url, SHORT_JOBS) as pool:
        await pool.fetchval("SELECT 1")  # our one connection, opened before the slots run out
        async with _workers(db_url, pool, tmp_path, seed=20261206) as chaos:
            deadline = chaos.deadline
            try:
                await _until_a_job_completes(pool, chaos.started, deadline)  # the workers are up
                # Every slot taken, then the workers' connections cut: they must reconnect, and
                # can't.
                await _take_every_free_connection(db_url, held)
                keeping = asyncio.create_task(_keep_every_slot(db_url, held, HOLD_S))
                await asyncio.sleep(0.05)  # the grabbers are waiting for a slot to free up
                terminated = await _terminate_queue_backends(pool)
                await keeping
                taken = len(held)
                reopened = await _queue_backends(pool)
                completed_while_held = await _completed(pool)
                released_at = time.monotonic()
                await asyncio.gather(*(conn.close() for conn in held))
                held = []
                await _enqueue(pool, range(SHORT_JOBS, SHORT_JOBS + LATE_JOBS))
                recover_s = await _until_a_job_completes(pool, released_at, deadline)
                await _until_all_completed(pool, SHORT_JOBS + LATE_JOBS, deadline)
            finally:
                await asyncio.gather(*(conn.close() for conn in held))
        seconds = time.monotonic() - chaos.started
        tally = await _tally(pool, SHORT_JOBS + LATE_JOBS)
    record(
        Scenario(
            key="50-out-of-connections",
            title="PostgreSQL out of connections",
            what=(
                f"{SHORT_JOBS:,} jobs, {WORKERS} workers; mid-run another client takes every free"
                " connection slot (max_connections), the workers' connections are terminated,"
                f" and for {HOLD_S:g} s that client grabs each slot that frees up, racing the"
                " workers' reconnects (the figures say how many connections the queue won"
                f" back); then it gives every slot back, and {LATE_JOBS} more jobs are enqueued."
            ),
            test="tests/chaos/test_chaos.py::"
            "test_no_job_is_lost_when_postgres_is_out_of_connections",
            **tally.counted(),
            recover_s=recover_s,
            recover_what="from the slots given back to the next completed job",
            extra={
                **_rerun_gaps(tally.ran),
                "connection slots taken": taken,
                "queue connections open at the end of the hold": reopened,
                "connections terminated": terminated,
                "jobs completed when the slots were given back": completed_while_held,
                "wall time (s)": round(seconds, 1),
            },
        )
    )
    _report(
        capsys,
        f"out of connections: terminated={terminated} reopened={reopened}"
        f" recover_s={recover_s:.2f}"
        f" executions={tally.ran.total} run_twice={tally.ran.run_twice} seconds={seconds:.1f}",
    )
    tally.assert_every_job_completed()
    assert terminated > 0


# -- a long idle-in-transaction reader -----------------------------------------------------


async def _dead_rows(pool: asyncpg.Pool) -> int:
    """Dead rows of the jobs table just after a VACUUM: the ones it could not remove."""
    await pool.execute("VACUUM jobs")
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        count: int = await conn.fetchval(
            "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'jobs'"
        )
    return count


async def test_the_queue_runs_on_under_a_long_idle_in_transaction_reader(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with _observed_database(db_url, SHORT_JOBS) as pool:
        # A reporting client that reads the jobs and forgets its transaction open: its snapshot
        # keeps every row version the queue's updates leave behind from being vacuumed.
        reader = await asyncpg.connect(db_url)
        try:
            await reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            await reader.fetchval("SELECT count(*) FROM jobs")
            async with _workers(db_url, pool, tmp_path, seed=20261207) as chaos:
                await _until_all_completed(pool, SHORT_JOBS, chaos.deadline)
                drained_s = time.monotonic() - chaos.started
                dead_while_held = await _dead_rows(pool)
                held_s = time.monotonic() - chaos.started
        finally:
            await reader.close()  # the transaction ends with its connection
        closed_at = time.monotonic()
        dead_after = await _dead_rows(pool)
        recover_s = time.monotonic() - closed_at
        tally = await _tally(pool, SHORT_JOBS)
    record(
        Scenario(
            key="70-idle-in-transaction",
            title="A long idle-in-transaction reader",
            what=(
                f"{SHORT_JOBS:,} jobs, {WORKERS} workers, while another client holds a REPEATABLE"
                " READ transaction open and idle on the queue's database from before the"
                " first job to after the last (vacuum can remove no row version the queue"
                " leaves behind meanwhile)."
            ),
            test="tests/chaos/test_chaos.py::"
            "test_the_queue_runs_on_under_a_long_idle_in_transaction_reader",
            **tally.counted(),
            recover_s=recover_s,
            recover_what="from the reader's end to a VACUUM that removed the dead rows",
            extra={
                "time to run every job (s)": round(drained_s, 1),
                "the transaction held for (s)": round(held_s, 1),
                "dead rows VACUUM could not remove while it was held": dead_while_held,
                "dead rows after it ended and a VACUUM": dead_after,
            },
        )
    )
    _report(
        capsys,
        f"idle reader: drained_s={drained_s:.1f} dead_held={dead_while_held}"
        f" dead_after={dead_after} run_twice={tally.ran.run_twice}",
    )
    tally.assert_every_job_completed()
    assert tally.ran.run_twice == 0, "nothing was killed: every job ran once"
