"""jobs.errors, the errors of past attempts, as the statements that record failures write it:
finish (a handler's error, a timeout, no handler) and rescue_expired (a lost lease), each
appending {"attempt", "at", "error"}, newest last, the newest MAX_ERRORS_KEPT kept."""

import uuid

import asyncpg

from queue_core.jobs import Failure, NewJob, Outcome, OutcomeKind
from queue_core.limits import MAX_ERRORS_KEPT
from queue_core.queue import Queue
from queue_core.states import JobStatus

RESCUED = "rescued from a lost worker: its lease expired"


async def _claim(queue: Queue, job_id: uuid.UUID, worker_id: str = "w1") -> int:
    [job] = await queue.claim(worker_id=worker_id, queues=["default"], limit=1, lease_s=30)
    assert job.id == job_id
    return job.attempt


async def _expire(pool: asyncpg.Pool, job_id: uuid.UUID) -> None:
    await pool.execute(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 minute' WHERE id = $1", job_id
    )


async def _errors(pool: asyncpg.Pool, job_id: uuid.UUID) -> list[tuple[int, str]]:
    errors = await pool.fetchval("SELECT errors FROM jobs WHERE id = $1", job_id)
    return [(e["attempt"], e["error"]) for e in errors or []]


async def test_handler_errors_and_a_rescue_are_kept_in_order(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    job_id = await queue.enqueue(NewJob(type="noop", payload={}, max_attempts=4))

    await _claim(queue, job_id)
    await queue.fail(worker_id="w1", failures=[Failure(job_id, "ValueError: one", 0)])
    await _claim(queue, job_id, worker_id="w-lost")
    await _expire(pool, job_id)
    [rescued] = await queue.rescue_expired()
    await _claim(queue, job_id)
    await queue.fail(worker_id="w1", failures=[Failure(job_id, "no handler", 0, final=True)])

    assert rescued.status is JobStatus.PENDING
    assert await _errors(pool, job_id) == [(1, "ValueError: one"), (2, RESCUED), (3, "no handler")]
    assert (await queue.get(job_id)).status is JobStatus.FAILED


async def test_a_rescue_that_fails_the_job_records_its_error_too(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    job_id = await queue.enqueue(NewJob(type="noop", payload={}, max_attempts=1))
    await _claim(queue, job_id)
    await _expire(pool, job_id)

    [rescued] = await queue.rescue_expired()

    assert rescued.status is JobStatus.FAILED
    assert await _errors(pool, job_id) == [(1, RESCUED)]


async def test_completion_cancel_release_and_snooze_add_no_error(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    ids = [await queue.enqueue(NewJob(type="noop", payload={"n": n})) for n in range(4)]
    claimed = await queue.claim(worker_id="w1", queues=["default"], limit=4, lease_s=30)
    assert {job.id for job in claimed} == set(ids)
    kinds = (
        OutcomeKind.COMPLETED,
        OutcomeKind.CANCELLED,
        OutcomeKind.RELEASED,
        OutcomeKind.SNOOZED,
    )

    await queue.finish(
        worker_id="w1",
        outcomes=[
            Outcome(job_id, kind, None if kind is OutcomeKind.COMPLETED else "why", 60, attempt=1)
            for job_id, kind in zip(ids, kinds, strict=True)
        ],
    )

    for job_id in ids:
        assert await _errors(pool, job_id) == []
    snoozed = await queue.get(ids[3])
    assert (snoozed.status, snoozed.attempts) == (JobStatus.PENDING, 0)


async def test_only_the_newest_errors_are_kept_by_a_rescue_too(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    job_id = await queue.enqueue(NewJob(type="noop", payload={}, max_attempts=1000))
    old = [{"attempt": n, "at": "2026-01-01T00:00:00+00:00", "error": f"e{n}"} for n in range(30)]
    await pool.execute("UPDATE jobs SET errors = $2 WHERE id = $1", job_id, old)
    await _claim(queue, job_id)
    await _expire(pool, job_id)

    await queue.rescue_expired()

    errors = await _errors(pool, job_id)
    assert len(errors) == MAX_ERRORS_KEPT
    assert errors[0] == (11, "e11")
    assert errors[-1] == (1, RESCUED)
