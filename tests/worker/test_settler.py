"""The worker's settler service on a real database: it settles what the completer hands it,
and what it was handed survives a crash of its loop (the supervisor runs it again). And the
rescuer's repair of dependants whose parent was deleted by hand."""

import asyncio
import uuid
from collections.abc import Sequence

import asyncpg
import pytest

from helpers import eventually
from queue_core.jobs import Failure, NewJob
from queue_core.queue import Queue
from queue_core.states import JobStatus
from queue_worker import maintenance
from queue_worker.maintenance import Rescuer, Settler


class _FailsOnce(Queue):
    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.calls = 0

    async def settle_dependants(
        self, job_ids: Sequence[uuid.UUID], *, max_transactions: int | None = None
    ) -> None:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("a fault of ours")
        await super().settle_dependants(job_ids, max_transactions=max_transactions)


async def test_what_the_settler_was_handed_survives_a_crash_of_its_loop(
    pool: asyncpg.Pool,
) -> None:
    queue = _FailsOnce(pool)
    parent, child = await queue.enqueue_many(
        [NewJob(type="t", payload={"n": 1}), NewJob(type="t", payload={"n": 2}, depends_on=(0,))]
    )
    [claimed] = await queue.claim(worker_id="w1", queues=["default"], limit=10, lease_s=30)
    failure = Failure(claimed.id, "boom", 0, final=True)
    [recorded] = await queue.finish(worker_id="w1", outcomes=[failure.outcome()], settle_now=False)
    assert recorded.dependants_unsettled
    settler = Settler(queue)
    settler.submit([parent])

    crashed = asyncio.create_task(settler.run())
    done, _ = await asyncio.wait([crashed], timeout=5)
    assert done
    assert isinstance(crashed.exception(), RuntimeError)
    assert (await queue.get(child)).status == JobStatus.PENDING

    async def child_failed() -> bool:
        return (await queue.get(child)).status == JobStatus.FAILED

    again = asyncio.create_task(settler.run())  # as the supervisor restarts it
    try:
        await eventually(child_failed, timeout_s=5)  # with nothing submitted since
        assert settler.turns == 1
    finally:
        again.cancel()


async def _orphan(queue: Queue, pool: asyncpg.Pool) -> uuid.UUID:
    """A dependant whose parent was then deleted by hand."""
    parent, child = await queue.enqueue_many(
        [NewJob(type="noop", payload={}), NewJob(type="noop", payload={}, depends_on=(0,))]
    )
    await pool.execute("DELETE FROM jobs WHERE id = $1", parent)
    return child


async def test_the_rescuer_fails_dependants_of_deleted_parents_once_an_interval(
    queue: Queue, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await _orphan(queue, pool)
    rescuer = Rescuer(queue, interval_s=60.0)
    await rescuer.rescue_once()  # the first pass sweeps
    assert (await queue.get(first)).status == JobStatus.FAILED

    second = await _orphan(queue, pool)
    await rescuer.rescue_once()  # within ORPHAN_SWEEP_INTERVAL_S: the sweep reads every waiting job
    assert (await queue.get(second)).status == JobStatus.PENDING
    monkeypatch.setattr(maintenance, "ORPHAN_SWEEP_INTERVAL_S", 0.0)
    await rescuer.rescue_once()
    assert (await queue.get(second)).status == JobStatus.FAILED


async def test_the_rescuer_releases_jobs_counted_as_waiting_with_nothing_to_wait_for(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    """More than a batch of them (waiting_for raised by hand): the sweep goes on until none
    is left, and they run."""
    jobs = await queue.enqueue_many([NewJob(type="noop", payload={}) for _ in range(5)])
    await pool.execute(
        "UPDATE jobs SET waiting_for = 1, updated_at = now() - interval '1 hour'"
        " WHERE id = ANY($1::uuid[])",
        jobs,
    )
    await Rescuer(queue, interval_s=60.0, batch=2).rescue_once()
    assert [(await queue.get(job)).waiting_for for job in jobs] == [0] * 5
    claimed = await queue.claim(worker_id="w1", queues=["default"], limit=10, lease_s=30)
    assert sorted(j.id for j in claimed) == sorted(jobs)
