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
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from helpers import Proc
from pg_provider import PgServer
from queue_core.db import create_pool
from queue_core.jobs import NewJob
from queue_core.queue import Queue
from queue_devtools.pgcluster import free_port

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(150)]

JOBS = 5_000
WORKERS = 3
KILL_EVERY_S = 1.0
DEADLINE_S = 110.0
HERE = Path(__file__).parent


@dataclass
class Figures:
    kills: int = 0
    running_at_kills: int = 0
    pg_restarts: int = 0
    # A database crash can interrupt the jobs running then, like a kill of every worker.
    running_at_restart: int = 0


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


async def _prepare_database(db_url: str) -> None:
    pool = await create_pool(db_url, max_size=1)
    try:
        await _prepare(pool, urlsplit(db_url).path.lstrip("/"))
    finally:
        await pool.close()


async def _prepare(pool: asyncpg.Pool, dbname: str) -> None:
    # The throwaway test cluster runs with synchronous_commit=off for speed, which loses the
    # last commits when PostgreSQL crashes. Production runs durable; so does this database.
    await pool.execute(f'ALTER DATABASE "{dbname}" SET synchronous_commit = on')
    await pool.execute(
        "CREATE TABLE executions (job_id uuid NOT NULL, pid int NOT NULL, attempt int NOT NULL,"
        " at timestamptz NOT NULL DEFAULT now())"
    )
    await Queue(pool).enqueue_many(
        [NewJob(type="chaos_record", payload={"n": i}, max_attempts=25) for i in range(JOBS)]
    )


async def test_no_job_is_lost_when_workers_are_killed_and_postgres_restarts(
    db_url: str, pg_server: PgServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _prepare_database(db_url)
    pool = await create_pool(db_url, max_size=4)
    chaos = Chaos(db_url, pool, tmp_path, seed=20261128)
    started = time.monotonic()
    restart_at = started + 3.0 if pg_server.owns_cluster else None
    try:
        while (counts := await _status_counts(pool)).get("completed", 0) < JOBS:
            elapsed = time.monotonic() - started
            assert elapsed < DEADLINE_S, f"not done in {DEADLINE_S} s: {counts}"
            if restart_at is not None and time.monotonic() >= restart_at:
                chaos.figures.running_at_restart = counts.get("running", 0)
                await asyncio.to_thread(pg_server.restart)
                chaos.figures.pg_restarts += 1
                restart_at = None
                continue
            await chaos.kill_one()
            await asyncio.sleep(chaos.rng.uniform(0.5 * KILL_EVERY_S, 1.5 * KILL_EVERY_S))
    except BaseException:
        print(chaos.tail_logs())  # noqa: T201 - the logs explain a failure
        raise
    finally:
        chaos.stop_all()
    seconds = time.monotonic() - started

    executions = await pool.fetchval("SELECT count(*) FROM executions")
    never_ran = await pool.fetchval(
        "SELECT count(*) FROM jobs j WHERE NOT EXISTS "
        "(SELECT 1 FROM executions e WHERE e.job_id = j.id)"
    )
    counts = await _status_counts(pool)
    await pool.close()
    duplicates = executions - JOBS
    figures = chaos.figures
    with capsys.disabled():
        print(  # noqa: T201 - the figures are this test's report
            f"\nchaos: jobs={JOBS} workers={WORKERS} kills={figures.kills} "
            f"pg_restarts={figures.pg_restarts} executions={executions} "
            f"duplicates={duplicates} running_at_kills={figures.running_at_kills} "
            f"running_at_restart={figures.running_at_restart} "
            f"seconds={seconds:.1f}"
        )
    assert counts == {"completed": JOBS}
    assert never_ran == 0
    assert figures.kills >= 3, "the run was too short to be chaos"
    assert 0 <= duplicates <= figures.running_at_kills + figures.running_at_restart
