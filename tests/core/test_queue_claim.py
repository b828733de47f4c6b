"""claim: which jobs a worker is leased, in what order, and what the lease looks like."""

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from queue_core.jobs import NewJob
from queue_core.queue import Queue
from queue_core.states import JobStatus

DEFAULT = ("default",)


async def _enqueue(
    queue: Queue,
    n: int = 1,
    *,
    queue_name: str = "default",
    priority: int = 0,
    max_attempts: int = 3,
    scheduled_at: datetime | None = None,
) -> list[uuid.UUID]:
    job = NewJob(
        type="noop",
        payload={},
        queue=queue_name,
        priority=priority,
        max_attempts=max_attempts,
        scheduled_at=scheduled_at,
    )
    return [await queue.enqueue(job) for _ in range(n)]


async def _set_created_ago(pool: asyncpg.Pool, job_id: uuid.UUID, seconds: float) -> None:
    await pool.execute(
        "UPDATE jobs SET created_at = now() - make_interval(secs => $2) WHERE id = $1",
        job_id,
        seconds,
    )


async def test_claim_returns_at_most_limit_jobs(queue: Queue) -> None:
    await _enqueue(queue, 5)

    first = await queue.claim(worker_id="w1", queues=DEFAULT, limit=2, lease_s=30)
    rest = await queue.claim(worker_id="w1", queues=DEFAULT, limit=10, lease_s=30)

    assert len(first) == 2
    assert len(rest) == 3
    assert not {j.id for j in first} & {j.id for j in rest}
    assert await queue.claim(worker_id="w1", queues=DEFAULT, limit=10, lease_s=30) == []


async def test_claim_with_no_free_slot_claims_nothing(queue: Queue) -> None:
    [job_id] = await _enqueue(queue)

    assert await queue.claim(worker_id="w1", queues=DEFAULT, limit=0, lease_s=30) == []
    assert (await queue.get(job_id)).status is JobStatus.PENDING


async def test_claim_takes_only_due_jobs(queue: Queue) -> None:
    now = datetime.now(UTC)
    [future] = await _enqueue(queue, scheduled_at=now + timedelta(hours=1))
    [past] = await _enqueue(queue, scheduled_at=now - timedelta(minutes=1))
    [unscheduled] = await _enqueue(queue)

    claimed = await queue.claim(worker_id="w1", queues=DEFAULT, limit=10, lease_s=30)

    assert {j.id for j in claimed} == {past, unscheduled}
    assert (await queue.get(future)).status is JobStatus.PENDING


async def test_claim_takes_only_the_requested_queues(queue: Queue) -> None:
    emails = await _enqueue(queue, 2, queue_name="emails")
    reports = await _enqueue(queue, 2, queue_name="reports")
    [other] = await _enqueue(queue, queue_name="other")

    claimed = await queue.claim(worker_id="w1", queues=["emails", "reports"], limit=10, lease_s=30)

    assert {j.id for j in claimed} == {*emails, *reports}
    assert {j.queue for j in claimed} == {"emails", "reports"}
    assert (await queue.get(other)).status is JobStatus.PENDING


async def test_claim_takes_higher_priority_first_then_oldest(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    [low_oldest] = await _enqueue(queue, priority=0)
    [high_newer] = await _enqueue(queue, priority=5)
    [high_older] = await _enqueue(queue, priority=5)
    await _set_created_ago(pool, low_oldest, 300)
    await _set_created_ago(pool, high_newer, 60)
    await _set_created_ago(pool, high_older, 120)

    order = [
        job.id
        for _ in range(3)
        for job in await queue.claim(worker_id="w1", queues=DEFAULT, limit=1, lease_s=30)
    ]

    assert order == [high_older, high_newer, low_oldest]


async def test_claim_orders_by_the_due_time_of_scheduled_jobs(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    # A job scheduled 10 min ago has waited longer than one created 5 min ago.
    [created_5_min_ago] = await _enqueue(queue)
    await _set_created_ago(pool, created_5_min_ago, 300)
    [due_10_min_ago] = await _enqueue(queue, scheduled_at=datetime.now(UTC) - timedelta(minutes=10))

    [first] = await queue.claim(worker_id="w1", queues=DEFAULT, limit=1, lease_s=30)

    assert first.id == due_10_min_ago


async def test_claim_across_queues_takes_higher_priority_first(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    """A worker serving several queues takes the best job among all of them: "highest priority
    and oldest first" (claim's doc), not "the alphabetically first queue first"."""
    [a_low_newer] = await _enqueue(queue, queue_name="a", priority=0)
    [b_high_older] = await _enqueue(queue, queue_name="b", priority=10)
    await _set_created_ago(pool, a_low_newer, 60)
    await _set_created_ago(pool, b_high_older, 120)

    [first] = await queue.claim(worker_id="w1", queues=["a", "b"], limit=1, lease_s=30)

    assert first.id == b_high_older, (
        "claim picked a lower-priority, newer job because its queue name sorts first"
    )


async def test_claim_leases_the_job_to_the_worker(queue: Queue, pool: asyncpg.Pool) -> None:
    [job_id] = await _enqueue(queue, priority=3, max_attempts=4, queue_name="q")

    [job] = await queue.claim(worker_id="worker-7", queues=["q"], limit=1, lease_s=12.5)

    row = await pool.fetchrow("SELECT *, now() AS db_now FROM jobs WHERE id = $1", job_id)
    assert row is not None
    assert row["status"] == JobStatus.RUNNING
    assert row["attempts"] == 1
    assert row["lease_owner"] == "worker-7"
    # One statement, one now(): the lease is exactly lease_s past the start.
    assert row["lease_expires_at"] - row["started_at"] == timedelta(seconds=12.5)
    assert abs(row["db_now"] - row["started_at"]) < timedelta(seconds=5)
    assert row["updated_at"] == row["started_at"]
    assert row["finished_at"] is None

    assert job.id == job_id
    assert (job.type, job.payload, job.queue) == ("noop", {}, "q")
    assert (job.priority, job.attempt, job.max_attempts) == (3, 1, 4)
    assert job.waited_s == pytest.approx((row["started_at"] - row["created_at"]).total_seconds())


async def test_a_scheduled_jobs_wait_counts_from_when_it_was_due(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    [job_id] = await _enqueue(queue, scheduled_at=datetime.now(UTC) + timedelta(hours=1))
    await pool.execute(
        "UPDATE jobs SET created_at = now() - interval '1 day',"
        " scheduled_at = now() - interval '2 seconds' WHERE id = $1",
        job_id,
    )

    [job] = await queue.claim(worker_id="w1", queues=DEFAULT, limit=1, lease_s=30)

    assert job.id == job_id
    assert 2.0 <= job.waited_s < 10.0  # from scheduled_at, not from a day ago


async def test_claim_does_not_take_running_or_finished_jobs(queue: Queue) -> None:
    [running, done] = await _enqueue(queue, 2)
    await queue.claim(worker_id="w1", queues=DEFAULT, limit=2, lease_s=30)
    assert await queue.complete(worker_id="w1", job_ids=[done]) == {done}

    assert await queue.claim(worker_id="w2", queues=DEFAULT, limit=10, lease_s=30) == []
    assert (await queue.get(running)).status is JobStatus.RUNNING


async def test_concurrent_claimers_never_get_the_same_job(queue: Queue, pool: asyncpg.Pool) -> None:
    jobs, claimers, batch = 1000, 8, 10
    await pool.execute(
        "INSERT INTO jobs (id, type, payload) "
        "SELECT gen_random_uuid(), 'noop', '{}'::jsonb FROM generate_series(1, $1)",
        jobs,
    )

    async def claim_until_empty(worker_id: str) -> list[uuid.UUID]:
        got: list[uuid.UUID] = []
        while claimed := await queue.claim(
            worker_id=worker_id, queues=DEFAULT, limit=batch, lease_s=30
        ):
            assert len(claimed) <= batch
            got.extend(j.id for j in claimed)
        return got

    # The pool holds 10 connections, so the 8 loops claim on separate connections at once.
    results = await asyncio.gather(*(claim_until_empty(f"w{i}") for i in range(claimers)))

    claimed_by = {job_id: f"w{i}" for i, ids in enumerate(results) for job_id in ids}
    counts = Counter(job_id for ids in results for job_id in ids)
    assert [job_id for job_id, n in counts.items() if n > 1] == []
    assert len(counts) == jobs
    assert sum(1 for ids in results if ids) > 1, "the claimers did not run concurrently"

    rows = await pool.fetch("SELECT id, status, attempts, lease_owner FROM jobs")
    assert len(rows) == jobs
    for row in rows:
        assert (row["status"], row["attempts"]) == (JobStatus.RUNNING, 1)
        assert row["lease_owner"] == claimed_by[row["id"]]
