"""complete and fail: the lease guard, retries with backoff, and giving up."""

import uuid
from datetime import timedelta

import asyncpg

from queue_core.jobs import Failure, NewJob, Outcome, OutcomeKind
from queue_core.queue import Queue
from queue_core.states import JobStatus

DEFAULT = ("default",)


async def _claimed(queue: Queue, *, worker_id: str = "w1", max_attempts: int = 3) -> uuid.UUID:
    job_id = await queue.enqueue(NewJob(type="noop", payload={}, max_attempts=max_attempts))
    [job] = await queue.claim(worker_id=worker_id, queues=DEFAULT, limit=1, lease_s=30)
    assert job.id == job_id
    return job_id


async def _row(pool: asyncpg.Pool, job_id: uuid.UUID) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT *, now() AS db_now FROM jobs WHERE id = $1", job_id)
    assert row is not None
    return row


# -- complete ---------------------------------------------------------------------------------


async def test_complete_marks_the_job_completed_and_releases_the_lease(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    job_id = await _claimed(queue)

    assert await queue.complete(worker_id="w1", job_ids=[job_id]) == {job_id}

    row = await _row(pool, job_id)
    assert row["status"] == JobStatus.COMPLETED
    assert row["attempts"] == 1
    assert row["lease_owner"] is None
    assert row["lease_expires_at"] is None
    assert row["error_message"] is None
    assert row["finished_at"] is not None
    assert abs(row["db_now"] - row["finished_at"]) < timedelta(seconds=5)


async def test_complete_by_another_worker_is_ignored(queue: Queue) -> None:
    job_id = await _claimed(queue, worker_id="owner")

    assert await queue.complete(worker_id="intruder", job_ids=[job_id]) == set()

    job = await queue.get(job_id)
    assert job.status is JobStatus.RUNNING
    assert job.finished_at is None


async def test_complete_twice_returns_nothing_the_second_time(queue: Queue) -> None:
    job_id = await _claimed(queue)
    assert await queue.complete(worker_id="w1", job_ids=[job_id]) == {job_id}
    finished_at = (await queue.get(job_id)).finished_at

    assert await queue.complete(worker_id="w1", job_ids=[job_id]) == set()
    assert (await queue.get(job_id)).finished_at == finished_at


async def test_complete_keeps_only_the_ids_still_leased_to_the_worker(queue: Queue) -> None:
    mine = await _claimed(queue, worker_id="w1")
    theirs = await _claimed(queue, worker_id="w2")
    pending = await queue.enqueue(NewJob(type="noop", payload={}))

    assert await queue.complete(worker_id="w1", job_ids=[mine, theirs, pending]) == {mine}

    assert (await queue.get(theirs)).status is JobStatus.RUNNING
    assert (await queue.get(pending)).status is JobStatus.PENDING


async def test_complete_of_nothing_is_a_no_op(queue: Queue) -> None:
    assert await queue.complete(worker_id="w1", job_ids=[]) == set()


# -- fail -------------------------------------------------------------------------------------


async def test_fail_with_attempts_left_reschedules_after_the_backoff(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    job_id = await _claimed(queue, max_attempts=3)

    [outcome] = await queue.fail(
        worker_id="w1", failures=[Failure(job_id, "ValueError: nope", retry_in_s=42.5)]
    )

    row = await _row(pool, job_id)
    assert row["status"] == JobStatus.PENDING
    assert row["attempts"] == 1
    assert row["error_message"] == "ValueError: nope"
    # One statement, one now(): due exactly retry_in_s after the failure was recorded.
    assert row["scheduled_at"] - row["updated_at"] == timedelta(seconds=42.5)
    assert abs(row["db_now"] - row["updated_at"]) < timedelta(seconds=5)
    assert row["lease_owner"] is None
    assert row["lease_expires_at"] is None
    assert row["finished_at"] is None
    assert (outcome.job_id, outcome.status, outcome.attempts) == (job_id, JobStatus.PENDING, 1)
    assert outcome.scheduled_at == row["scheduled_at"]


async def test_a_rescheduled_job_is_not_claimed_before_its_backoff(queue: Queue) -> None:
    job_id = await _claimed(queue)
    await queue.fail(worker_id="w1", failures=[Failure(job_id, "boom", retry_in_s=3600)])

    assert await queue.claim(worker_id="w1", queues=DEFAULT, limit=1, lease_s=30) == []


async def test_a_retried_job_counts_its_attempts_until_it_fails_for_good(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    job_id = await _claimed(queue, max_attempts=2)
    [first] = await queue.fail(worker_id="w1", failures=[Failure(job_id, "one", retry_in_s=0)])
    assert first.status is JobStatus.PENDING

    [again] = await queue.claim(worker_id="w2", queues=DEFAULT, limit=1, lease_s=30)
    assert (again.id, again.attempt) == (job_id, 2)
    [last] = await queue.fail(worker_id="w2", failures=[Failure(job_id, "two", retry_in_s=0)])

    assert (last.status, last.attempts) == (JobStatus.FAILED, 2)
    row = await _row(pool, job_id)
    assert row["status"] == JobStatus.FAILED
    assert row["error_message"] == "two"
    assert row["finished_at"] is not None


async def test_fail_at_max_attempts_fails_the_job(queue: Queue, pool: asyncpg.Pool) -> None:
    job_id = await _claimed(queue, max_attempts=1)

    [outcome] = await queue.fail(
        worker_id="w1", failures=[Failure(job_id, "RuntimeError: x", retry_in_s=60)]
    )

    row = await _row(pool, job_id)
    assert (outcome.status, outcome.attempts) == (JobStatus.FAILED, 1)
    assert row["status"] == JobStatus.FAILED
    assert row["error_message"] == "RuntimeError: x"
    assert row["scheduled_at"] is None  # not moved by a retry that will never happen
    assert row["finished_at"] is not None
    assert abs(row["db_now"] - row["finished_at"]) < timedelta(seconds=5)
    assert row["lease_owner"] is None
    assert row["lease_expires_at"] is None


async def test_fail_final_fails_at_once_despite_attempts_left(queue: Queue) -> None:
    job_id = await _claimed(queue, max_attempts=5)

    [outcome] = await queue.fail(
        worker_id="w1", failures=[Failure(job_id, "bad payload", retry_in_s=60, final=True)]
    )

    job = await queue.get(job_id)
    assert (outcome.status, job.status, job.attempts) == (JobStatus.FAILED, JobStatus.FAILED, 1)
    assert job.error_message == "bad payload"
    assert job.finished_at is not None


async def test_fail_records_each_failure_of_a_batch_on_its_own(queue: Queue) -> None:
    retry = await _claimed(queue)
    give_up = await _claimed(queue)

    outcomes = await queue.fail(
        worker_id="w1",
        failures=[
            Failure(retry, "try again", retry_in_s=10),
            Failure(give_up, "never", retry_in_s=10, final=True),
        ],
    )

    assert {o.job_id: o.status for o in outcomes} == {
        retry: JobStatus.PENDING,
        give_up: JobStatus.FAILED,
    }
    assert (await queue.get(retry)).error_message == "try again"
    assert (await queue.get(give_up)).error_message == "never"


async def test_fail_by_another_worker_is_ignored(queue: Queue) -> None:
    job_id = await _claimed(queue, worker_id="owner")

    assert (
        await queue.fail(
            worker_id="intruder", failures=[Failure(job_id, "x", retry_in_s=0, final=True)]
        )
        == []
    )

    job = await queue.get(job_id)
    assert job.status is JobStatus.RUNNING
    assert job.error_message is None


async def test_fail_after_complete_is_ignored(queue: Queue) -> None:
    job_id = await _claimed(queue)
    await queue.complete(worker_id="w1", job_ids=[job_id])

    assert await queue.fail(worker_id="w1", failures=[Failure(job_id, "late", retry_in_s=0)]) == []
    assert (await queue.get(job_id)).status is JobStatus.COMPLETED


async def test_fail_of_nothing_is_a_no_op(queue: Queue) -> None:
    assert await queue.fail(worker_id="w1", failures=[]) == []


async def test_an_attempt_given_back_leaves_one_even_if_max_attempts_was_lowered_meanwhile(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    """Claimed at attempt 3 of 5, then max_attempts set to 2 by hand: giving the attempt back
    (released, snoozed) made a pending job with no attempt left, which the table refuses, and
    the whole batch of outcomes with it."""
    odd = await queue.enqueue(NewJob(type="noop", payload={}, max_attempts=5))
    other = await queue.enqueue(NewJob(type="noop", payload={}))
    await pool.execute("UPDATE jobs SET attempts = 2 WHERE id = $1", odd)
    claimed = await queue.claim(worker_id="w1", queues=DEFAULT, limit=2, lease_s=30)
    assert {j.id for j in claimed} == {odd, other}
    await pool.execute("UPDATE jobs SET max_attempts = 2 WHERE id = $1", odd)

    recorded = await queue.finish(
        worker_id="w1",
        outcomes=[
            Outcome(odd, OutcomeKind.RELEASED, "shutting down"),
            Outcome(other, OutcomeKind.SNOOZED, retry_in_s=60),
        ],
    )

    assert {r.job_id: r.status for r in recorded} == {
        odd: JobStatus.PENDING,
        other: JobStatus.PENDING,
    }
    row = await _row(pool, odd)
    assert (row["attempts"], row["max_attempts"]) == (1, 2)  # one attempt left to run
