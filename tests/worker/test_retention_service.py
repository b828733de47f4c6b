"""The worker's retention service (queue_worker.retention): its settings, its metrics, and what
it does when the database role may not delete jobs."""

import asyncio
import uuid
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from core.retention_rows import insert_job, job_ids
from queue_core.db import create_pool
from queue_core.retention import RETENTION_LOCK_KEY, Retention, RoundResult
from queue_core.states import JobStatus
from queue_worker.metrics import PrometheusRetentionEvents
from queue_worker.retention import RetentionService, retention_by_status
from queue_worker.settings import WorkerSettings

URL = "postgresql://queue:secret@db.example:5432/queue"
DAY_S = 86400.0
PASSWORD = "retention-test"  # noqa: S105 - a throwaway role of the test's database


def test_the_defaults_keep_completed_and_cancelled_a_week_and_failed_a_month() -> None:
    settings = WorkerSettings(database_url=URL)
    assert retention_by_status(
        settings.retention_completed_s,
        settings.retention_failed_s,
        settings.retention_cancelled_s,
    ) == {
        JobStatus.COMPLETED: 7 * DAY_S,
        JobStatus.FAILED: 30 * DAY_S,
        JobStatus.CANCELLED: 7 * DAY_S,
    }
    assert settings.retention_interval_s == 60.0
    assert settings.retention_batch == 1000


def test_zero_keeps_a_status_for_good() -> None:
    settings = WorkerSettings(database_url=URL, retention_failed_s=0)
    assert (
        retention_by_status(
            settings.retention_completed_s,
            settings.retention_failed_s,
            settings.retention_cancelled_s,
        )[JobStatus.FAILED]
        is None
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("retention_completed_s", 30),  # under a minute: below the clock slack
        ("retention_failed_s", -1),
        ("retention_cancelled_s", float("inf")),
        ("retention_interval_s", 0),
        ("retention_batch", 0),
        ("retention_batch", 1_000_000),
    ],
)
def test_bad_retention_settings_are_refused(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        WorkerSettings.model_validate({"database_url": URL, field: value})


def _sample(name: str, status: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"status": status})


def test_only_the_replica_that_worked_reports_the_oldest_ages() -> None:
    events = PrometheusRetentionEvents(
        {JobStatus.COMPLETED: DAY_S, JobStatus.FAILED: None, JobStatus.CANCELLED: DAY_S}
    )
    assert _sample("queue_worker_retention_seconds", "completed") == DAY_S
    assert _sample("queue_worker_retention_seconds", "failed") == 0
    before = _sample("queue_worker_retention_deleted_total", "completed") or 0.0

    events.retention_round(
        RoundResult(
            locked=True,
            deleted={JobStatus.COMPLETED: 7},
            batches={JobStatus.COMPLETED: 1},
            oldest_s={JobStatus.COMPLETED: 100.0, JobStatus.FAILED: None},
        )
    )
    assert _sample("queue_worker_retention_deleted_total", "completed") == before + 7
    assert _sample("queue_worker_retention_oldest_finished_seconds", "completed") == 100.0
    assert _sample("queue_worker_retention_oldest_finished_seconds", "failed") == 0.0

    events.retention_round(RoundResult(locked=False))
    assert _sample("queue_worker_retention_oldest_finished_seconds", "completed") is None
    assert _sample("queue_worker_retention_oldest_finished_seconds", "failed") is None


class _Recorded:
    def __init__(self) -> None:
        self.rounds: list[RoundResult] = []
        self.failures = 0

    def retention_round(self, result: RoundResult) -> None:
        self.rounds.append(result)

    def retention_failed(self) -> None:
        self.failures += 1


async def _login_role(pool: asyncpg.Pool, db_url: str, grant: str) -> tuple[str, str]:
    """A new login role given ``grant`` (e.g. ``IN ROLE task_queue_worker``): (name, url)."""
    name = f"tq_worker_{uuid.uuid4().hex[:10]}"
    await pool.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{PASSWORD}' {grant}")
    parts = urlsplit(db_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return name, urlunsplit(parts._replace(netloc=f"{name}:{PASSWORD}@{host}"))


async def test_the_worker_role_deletes_what_retention_deletes(
    db_url: str, pool: asyncpg.Pool
) -> None:
    """Retention runs with the least privilege the workers have (migration 0011)."""
    old = await insert_job(pool, JobStatus.COMPLETED, created_ago=timedelta(days=30))
    name, worker_url = await _login_role(pool, db_url, "IN ROLE task_queue_worker")
    worker_pool = await create_pool(worker_url, max_size=2)
    try:
        events = _Recorded()
        service = RetentionService(
            Retention(worker_pool, {JobStatus.COMPLETED: DAY_S}), 60.0, events
        )
        await service.run_once()
        assert events.failures == 0
    finally:
        await worker_pool.close()
        await pool.execute(f"DROP ROLE {name}")
    assert old not in await job_ids(pool)


async def test_a_role_that_may_not_delete_jobs_is_logged_not_crashed(
    db_url: str, pool: asyncpg.Pool
) -> None:
    """A role without DELETE on jobs (a database migrated before 0011, or a hand-made role):
    the round is counted as failed and logged, and the service goes on instead of crashing
    into a failing /healthz."""
    old = await insert_job(pool, JobStatus.COMPLETED, created_ago=timedelta(days=30))
    name = f"tq_worker_{uuid.uuid4().hex[:10]}"
    await pool.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{PASSWORD}'")
    await pool.execute(f"GRANT SELECT, UPDATE ON TABLE jobs TO {name}")
    parts = urlsplit(db_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    worker_url = urlunsplit(parts._replace(netloc=f"{name}:{PASSWORD}@{host}"))
    worker_pool = await create_pool(worker_url, max_size=2)
    try:
        events = _Recorded()
        service = RetentionService(
            Retention(worker_pool, {JobStatus.COMPLETED: DAY_S}), 60.0, events
        )
        assert await service.run_once() is None
        assert events.failures == 1
        assert events.rounds == []
    finally:
        await worker_pool.close()
        await pool.execute(f"REVOKE ALL ON TABLE jobs FROM {name}")
        await pool.execute(f"DROP ROLE {name}")
    assert old in await job_ids(pool)
    # The round gave its lock back.
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", RETENTION_LOCK_KEY)
        await conn.execute("SELECT pg_advisory_unlock($1)", RETENTION_LOCK_KEY)


async def test_a_round_cut_short_by_shutdown_is_not_counted_as_failed(db_url: str) -> None:
    """Stopping the worker cancels a round in progress: that is no failure to alert on."""
    small_pool = await create_pool(db_url, max_size=1)
    try:
        events = _Recorded()
        service = RetentionService(
            Retention(small_pool, {JobStatus.COMPLETED: DAY_S}), 60.0, events
        )
        async with small_pool.acquire():  # the round waits for the pool's only connection
            round_task = asyncio.create_task(service.run_once())
            await asyncio.sleep(0.2)
            assert not round_task.done()
            round_task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await round_task
        assert (events.failures, events.rounds) == (0, [])
    finally:
        await small_pool.close()
