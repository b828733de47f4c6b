"""Heartbeat and finish over the same rows never deadlock.

A worker runs both at once on two pool connections, over the same running jobs: the heartbeat
extends every lease it holds while the completer records the jobs that just ended. Two
statements that lock a shared set of rows in different orders can each wait for the other;
the heartbeat never waits (SKIP LOCKED), so no cycle can form.
"""

import asyncio
import random

import asyncpg

from queue_core.jobs import NewJob, Outcome, OutcomeKind
from queue_core.queue import Queue

ROUNDS = 15
JOBS = 400


async def test_heartbeat_and_finish_over_the_same_rows_never_deadlock(queue: Queue) -> None:
    rng = random.Random(7)  # noqa: S311 - shuffling test input
    for _ in range(ROUNDS):
        await queue.enqueue_many([NewJob(type="noop", payload={"n": n}) for n in range(JOBS)])
        claimed = await queue.claim(worker_id="w", queues=["default"], limit=JOBS, lease_s=30)
        assert len(claimed) == JOBS
        # Callers hand in their jobs in any order; each statement must still lock in one order.
        held = [(job.id, job.attempt) for job in claimed]
        done = [Outcome(job.id, OutcomeKind.COMPLETED, attempt=job.attempt) for job in claimed]
        rng.shuffle(held)
        rng.shuffle(done)
        # A deadlock would surface here as DatabaseConflictError (PostgreSQL aborts one side).
        leases, recorded = await asyncio.gather(
            queue.heartbeat(worker_id="w", attempts=held, lease_s=30),
            queue.finish(worker_id="w", outcomes=done),
        )
        assert len(recorded) == JOBS
        # Whatever the heartbeat skipped or saw, it reported no job as taken from us (the
        # finish of our own jobs is not a loss of their leases).
        assert len(leases) in (0, JOBS)


async def test_a_heartbeat_reports_a_row_locked_elsewhere_as_still_ours(
    queue: Queue, db_url: str
) -> None:
    """Skipping a locked row must not look like losing it: the worker would stop the job."""
    [job_id] = await queue.enqueue_many([NewJob(type="noop", payload={"n": 1})])
    [job] = await queue.claim(worker_id="w", queues=["default"], limit=1, lease_s=30)
    conn = await asyncpg.connect(db_url)
    try:
        async with conn.transaction():
            before = await conn.fetchval("SELECT lease_expires_at FROM jobs WHERE id = $1", job_id)
            await conn.execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", job_id)
            async with asyncio.timeout(5):  # it must not wait for our lock
                leases = await queue.heartbeat(
                    worker_id="w", attempts=[(job.id, job.attempt)], lease_s=300
                )
            assert [(lease.job_id, lease.attempt) for lease in leases] == [(job_id, 1)]
        after = await conn.fetchval("SELECT lease_expires_at FROM jobs WHERE id = $1", job_id)
        assert after == before  # skipped: extended at the next beat instead
        await queue.heartbeat(worker_id="w", attempts=[(job.id, job.attempt)], lease_s=300)
        extended = await conn.fetchval("SELECT lease_expires_at FROM jobs WHERE id = $1", job_id)
        assert extended > before
    finally:
        await conn.close()
