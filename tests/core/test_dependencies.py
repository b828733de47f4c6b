"""depends_on: a job runs once every job it depends on completed; a failed or cancelled one ends
its dependants too, transitively, with a reason naming it; and the races with a parent's outcome."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from helpers import RecordedQueueEvents
from queue_core import bulk
from queue_core.bulk import retry_matching_step
from queue_core.dependencies import MAX_LEVELS_PER_TRANSACTION, SETTLE_LOCK_TIMEOUT_S
from queue_core.errors import DependencyEndedError, InvalidJobError, UnknownDependencyError
from queue_core.gated import enqueue_gated_all
from queue_core.jobs import EnqueueOutcome, Failure, Idempotency, NewJob
from queue_core.keyed import AsyncpgDb
from queue_core.listing import JobFilter, JobListing
from queue_core.queue import SETTLE_TRANSACTIONS_INLINE, Queue
from queue_core.states import JobStatus

DEFAULT = ("default",)


def _job(*depends_on: uuid.UUID | int, max_attempts: int = 1) -> NewJob:
    return NewJob(type="noop", payload={}, depends_on=depends_on, max_attempts=max_attempts)


async def _claim(queue: Queue) -> list[uuid.UUID]:
    jobs = await queue.claim(worker_id="w1", queues=DEFAULT, limit=100, lease_s=30)
    return [j.id for j in jobs]


async def _status(queue: Queue, job_id: uuid.UUID) -> JobStatus:
    return (await queue.get(job_id)).status


async def test_a_chain_runs_one_link_at_a_time(queue: Queue) -> None:
    a, b, c = await queue.enqueue_many([_job(), _job(0), _job(1)])

    assert await _claim(queue) == [a]
    assert (await queue.get(b)).waiting_for == 1
    [dep] = await queue.dependencies(b)
    assert (dep.id, dep.status, dep.satisfied) == (a, JobStatus.RUNNING, False)

    await queue.complete(worker_id="w1", job_ids=[a])
    assert (await queue.get(b)).waiting_for == 0
    assert await _claim(queue) == [b]
    await queue.complete(worker_id="w1", job_ids=[b])
    assert await _claim(queue) == [c]


async def test_a_job_waits_for_all_of_its_dependencies(queue: Queue) -> None:
    a, b = await queue.enqueue_many([_job(), _job()])
    c = await queue.enqueue(_job(a, b))
    assert set(await _claim(queue)) == {a, b}

    await queue.complete(worker_id="w1", job_ids=[a])
    assert await _claim(queue) == []
    await queue.complete(worker_id="w1", job_ids=[b])
    assert await _claim(queue) == [c]


async def test_a_parent_failing_for_good_fails_its_dependants_transitively(queue: Queue) -> None:
    a, b, c = await queue.enqueue_many([_job(), _job(0), _job(1)])
    [claimed] = await _claim(queue)
    await queue.fail(worker_id="w1", failures=[Failure(claimed, "boom", 0, final=True)])

    b_job, c_job = await queue.get(b), await queue.get(c)
    assert (b_job.status, b_job.error_message) == (JobStatus.FAILED, f"dependency {a} failed")
    assert (c_job.status, c_job.error_message) == (JobStatus.FAILED, f"dependency {b} failed")
    assert b_job.attempts == c_job.attempts == 0


async def test_a_retried_parent_does_not_fail_its_dependants_until_its_last_attempt(
    queue: Queue,
) -> None:
    a, b = await queue.enqueue_many([_job(max_attempts=2), _job(0)])
    [claimed] = await _claim(queue)
    await queue.fail(worker_id="w1", failures=[Failure(claimed, "boom", 0)])
    assert await _status(queue, b) == JobStatus.PENDING
    assert await _claim(queue) == [a]
    await queue.complete(worker_id="w1", job_ids=[a])
    assert await _claim(queue) == [b]


async def test_cancelling_a_parent_cancels_its_dependants_transitively(queue: Queue) -> None:
    a, b, c = await queue.enqueue_many([_job(), _job(0), _job(1)])
    await queue.cancel(a)

    b_job, c_job = await queue.get(b), await queue.get(c)
    assert b_job.status == c_job.status == JobStatus.CANCELLED
    assert b_job.error_message == f"dependency {a} was cancelled"
    assert c_job.error_message == f"dependency {b} was cancelled"


async def test_depending_on_finished_jobs(queue: Queue) -> None:
    done, failed = await queue.enqueue_many([_job(), _job()])
    await _claim(queue)
    await queue.complete(worker_id="w1", job_ids=[done])
    await queue.fail(worker_id="w1", failures=[Failure(failed, "boom", 0, final=True)])

    runs = await queue.enqueue(_job(done))
    doomed = await queue.enqueue(_job(done, failed))

    assert await _claim(queue) == [runs]
    doomed_job = await queue.get(doomed)
    assert doomed_job.status == JobStatus.FAILED
    assert doomed_job.error_message == f"dependency {failed} failed"


async def test_unknown_dependencies_refuse_the_whole_batch(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    ghost = uuid.uuid4()
    with pytest.raises(UnknownDependencyError, match=str(ghost)):
        await queue.enqueue_batch([_job(), _job(ghost)])
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 0


@pytest.mark.parametrize("ref", [1, 2, -1])  # itself, a later job, not an index
async def test_a_batch_index_must_name_an_earlier_job(queue: Queue, ref: int) -> None:
    with pytest.raises(InvalidJobError, match="earlier job"):
        await queue.enqueue_batch([_job(), _job(ref), _job()])


@pytest.mark.parametrize("ref", ["3f1c0f64-0000-4000-8000-000000000000", 1.0, None, True])
async def test_a_dependency_that_is_neither_a_job_id_nor_an_index_is_refused(
    queue: Queue, pool: asyncpg.Pool, ref: object
) -> None:
    """A job id as text (or any other value) raised a bare TypeError (or was taken for an
    index, True for 1) once the batch's statements had begun."""
    with pytest.raises(InvalidJobError, match="depends_on"):
        await queue.enqueue_batch([_job(), _job(ref)])  # type: ignore[arg-type]
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 0


async def test_a_dependant_enqueued_while_its_parent_finishes_is_released(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    """The race: the dependant's transaction locks the parent; the parent's finish waits for
    it, then must see the new dependant (through dependants_unsettled) and release it."""
    parent = await queue.enqueue(_job())
    assert await _claim(queue) == [parent]
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        [enqueued] = await enqueue_gated_all(AsyncpgDb(conn), [_job(parent)])
        finishing = asyncio.create_task(queue.complete(worker_id="w1", job_ids=[parent]))
        await asyncio.sleep(0.2)  # let the finish reach the parent's row lock and wait there
        assert not finishing.done()
        await tx.commit()
    assert await finishing == {parent}
    assert await _claim(queue) == [enqueued.id]


async def test_settling_gives_up_on_a_dependant_an_open_transaction_holds_and_the_sweep_retries(
    queue: Queue, queue_events: RecordedQueueEvents, pool: asyncpg.Pool
) -> None:
    """A caller's own transaction that enqueues a job depending on a waiting one locks that
    one until it ends (queue_core.transactional). Settling waited on that lock for as long: the
    worker's settler, the rescuer (whose sweep then waited on the parent the settler held, and
    rescued no lease meanwhile) and a cancel over HTTP, silently, for as long as the caller's
    transaction stayed open. It now gives up after SETTLE_LOCK_TIMEOUT_S, leaving the parent
    flagged for the sweep."""
    parent, child = await queue.enqueue_many([_job(), _job(0)])
    assert await _claim(queue) == [parent]
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await enqueue_gated_all(AsyncpgDb(conn), [_job(child)])  # locks child until the end
        async with asyncio.timeout(SETTLE_LOCK_TIMEOUT_S + 5):
            assert await queue.complete(worker_id="w1", job_ids=[parent]) == {parent}
        assert (await queue.get(child)).waiting_for == 1
        assert queue_events.unsettled == [1]  # counted in a metric, not only logged
        await tx.commit()
    await pool.execute(
        "UPDATE jobs SET updated_at = now() - interval '1 minute' WHERE id = $1", parent
    )
    assert await queue.settle_stragglers() == 1
    assert await _claim(queue) == [child]
    assert queue_events.unsettled == [1]


async def test_dependants_of_a_parent_deleted_by_hand_fail_naming_it_instead_of_waiting(
    queue: Queue, pool: asyncpg.Pool, queue_events: RecordedQueueEvents
) -> None:
    parent, child, grandchild, other = await queue.enqueue_many([_job(), _job(0), _job(1), _job()])
    waiting = await queue.enqueue(_job(other))  # its parent is there: left alone
    await pool.execute("DELETE FROM jobs WHERE id = $1", parent)  # by hand, edges left behind

    assert await queue.fail_orphaned_dependants() == 1
    assert await _status(queue, child) == JobStatus.FAILED
    assert (await queue.get(child)).error_message == f"dependency {parent} no longer exists"
    assert await _status(queue, grandchild) == JobStatus.FAILED  # settled in turn
    assert (await queue.get(grandchild)).error_message == f"dependency {child} failed"
    assert await _status(queue, waiting) == JobStatus.PENDING
    assert (await queue.get(waiting)).waiting_for == 1
    assert await queue.fail_orphaned_dependants() == 0
    assert queue_events.repaired == [("orphaned", 1)]  # counted in a metric, not only logged


async def test_a_job_counted_as_waiting_with_no_dependency_left_is_released_by_the_sweep(
    queue: Queue, pool: asyncpg.Pool, queue_events: RecordedQueueEvents
) -> None:
    """waiting_for raised, or an edge deleted, by hand: nothing would ever count the job down,
    and it waited for ever. The sweep makes it due; jobs that do wait for a dependency, and a
    job whose time has not come, keep theirs."""
    parent, raised, edge_lost = await queue.enqueue_many([_job(), _job(0), _job(0)])
    plain = await queue.enqueue(_job())
    later = await queue.enqueue(
        NewJob(type="noop", payload={}, scheduled_at=datetime.now(UTC) + timedelta(hours=1))
    )
    await pool.execute("UPDATE jobs SET waiting_for = 3 WHERE id = ANY($1::uuid[])", [plain, later])
    await pool.execute("UPDATE jobs SET waiting_for = 2 WHERE id = $1", raised)
    await pool.execute("DELETE FROM job_dependencies WHERE job_id = $1", edge_lost)
    assert set(await _claim(queue)) == {parent}

    assert await queue.release_miscounted_dependants(min_age_s=0) == 3  # plain, later, edge_lost
    assert queue_events.repaired == [("miscounted", 3)]
    assert (await queue.get(raised)).waiting_for == 2  # its parent has still to complete
    assert (await queue.get(later)).waiting_for == 0
    assert set(await _claim(queue)) == {plain, edge_lost}  # due now
    due_at = (await queue.get(later)).scheduled_at
    assert due_at is not None
    assert due_at > datetime.now(UTC)  # not yet due

    await queue.complete(worker_id="w1", job_ids=[parent])
    assert (await queue.get(raised)).waiting_for == 1  # the parent counted once, as it should
    assert await _claim(queue) == []
    assert await queue.release_miscounted_dependants(limit=1, min_age_s=0) == 1
    assert await _claim(queue) == [raised]
    assert await queue.release_miscounted_dependants(min_age_s=0) == 0
    assert queue_events.repaired == [("miscounted", 3), ("miscounted", 1)]


async def test_the_miscount_sweep_leaves_a_job_changed_lately_to_a_later_pass(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    """An enqueue whose statements commit one by one may commit a dependant before its edges."""
    job = await queue.enqueue(_job())
    await pool.execute("UPDATE jobs SET waiting_for = 1 WHERE id = $1", job)
    assert await queue.release_miscounted_dependants(min_age_s=60) == 0
    await pool.execute(
        "UPDATE jobs SET updated_at = now() - interval '61 seconds' WHERE id = $1", job
    )
    assert await queue.release_miscounted_dependants(min_age_s=60) == 1


async def test_the_miscount_sweep_leaves_a_job_being_changed_to_its_next_pass(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    job = await queue.enqueue(_job())
    await pool.execute("UPDATE jobs SET waiting_for = 1 WHERE id = $1", job)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT FROM jobs WHERE id = $1 FOR UPDATE", job)
        async with asyncio.timeout(5):  # SKIP LOCKED: it does not wait for the lock
            assert await queue.release_miscounted_dependants(min_age_s=0) == 0
    assert await queue.release_miscounted_dependants(min_age_s=0) == 1
    assert await _claim(queue) == [job]


async def test_the_sweep_settles_dependants_a_lost_process_left(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    parent, child = await queue.enqueue_many([_job(), _job(0)])
    # The parent completed by a process that died before settling its dependants.
    await pool.execute(
        "UPDATE jobs SET status = 'completed', finished_at = now(), "
        "updated_at = now() - interval '1 minute' WHERE id = $1",
        parent,
    )
    assert await _claim(queue) == []
    assert await queue.settle_stragglers() == 1
    assert await _claim(queue) == [child]
    assert await queue.settle_stragglers() == 0


async def test_a_retried_dependant_waits_again_for_its_retried_parent(queue: Queue) -> None:
    parent, child = await queue.enqueue_many([_job(max_attempts=1), _job(0)])
    await _claim(queue)
    await queue.fail(worker_id="w1", failures=[Failure(parent, "boom", 0, final=True)])
    assert await _status(queue, child) == JobStatus.FAILED

    await queue.retry(parent)
    await queue.retry(child)  # its parent is pending again: it waits for it
    assert (await queue.get(child)).waiting_for == 1
    assert await _claim(queue) == [parent]
    await queue.complete(worker_id="w1", job_ids=[parent])
    assert await _claim(queue) == [child]


async def test_a_dependant_is_not_retried_while_its_parent_stays_failed_or_is_gone(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    """Retried alone, it waited for a parent nothing would run again, until an unrelated new
    dependant of that parent had it failed again."""
    parent, child = await queue.enqueue_many([_job(max_attempts=1), _job(0)])
    await _claim(queue)
    await queue.fail(worker_id="w1", failures=[Failure(parent, "boom", 0, final=True)])

    with pytest.raises(DependencyEndedError, match=f"dependency {parent} is failed"):
        await queue.retry(child)
    record = await queue.get(child)
    assert record.status == JobStatus.FAILED
    assert record.error_message == f"dependency {parent} failed"
    assert await queue.retry_many([child]) == 0

    # Both together: the parent runs again, then the child.
    assert await queue.retry_many([child, parent]) == 2
    assert await _claim(queue) == [parent]
    await queue.complete(worker_id="w1", job_ids=[parent])
    assert await _claim(queue) == [child]

    # A parent deleted by hand (retention waits for its dependants to be told).
    lone_parent, lone_child = await queue.enqueue_many([_job(max_attempts=1), _job(0)])
    await queue.cancel(lone_parent)
    assert await _status(queue, lone_child) == JobStatus.CANCELLED
    await pool.execute("DELETE FROM jobs WHERE id = $1", lone_parent)
    with pytest.raises(DependencyEndedError, match=f"dependency {lone_parent} was deleted"):
        await queue.retry(lone_child)


async def test_dependencies_and_a_concurrency_key_together(queue: Queue) -> None:
    a = await queue.enqueue(_job())
    keyed = NewJob(
        type="noop", payload={}, depends_on=(a,), concurrency_key="k", concurrency_limit=1
    )
    b, c = await queue.enqueue_many([keyed, keyed])
    assert await _claim(queue) == [a]
    await queue.complete(worker_id="w1", job_ids=[a])
    queue._keyed_probe = ((), False, 0.0)  # noqa: SLF001 - look again now, not in 0.2 s
    claimed = await _claim(queue)
    assert len(claimed) == 1
    assert set(claimed) < {b, c}


async def test_a_job_with_an_idempotency_key_keeps_its_dependencies_and_key(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    parent = await queue.enqueue(_job())
    job = NewJob(
        type="noop",
        payload={},
        depends_on=(parent,),
        concurrency_key="k",
        concurrency_limit=1,
        idempotency=Idempotency(key="ns/once", fingerprint=b"f", ttl_s=60),
    )
    first = await queue.enqueue_keyed(job)
    again = await queue.enqueue_keyed(job)

    assert (again.id, again.outcome) == (first.id, EnqueueOutcome.REPLAYED)
    assert (await queue.get(first.id)).waiting_for == 1
    assert [d.id for d in await queue.dependencies(first.id)] == [parent]
    assert await pool.fetchval("SELECT concurrency_limit FROM concurrency_keys") == 1


async def test_deleting_a_finished_job_deletes_its_own_edges_only(queue: Queue) -> None:
    parent, child = await queue.enqueue_many([_job(), _job(0)])
    await _claim(queue)
    await queue.complete(worker_id="w1", job_ids=[parent])
    await _claim(queue)
    await queue.complete(worker_id="w1", job_ids=[child])

    await queue.delete_finished(parent)
    [dep] = await queue.dependencies(child)
    assert (dep.id, dep.status, dep.satisfied) == (parent, None, True)  # shown as gone

    await queue.delete_finished(child)
    assert await queue.dependencies(child) == []


async def test_deleting_a_parent_its_dependants_were_not_told_about_tells_them_first(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    """Its worker died between recording the outcome and settling: deleted as it was, the
    dependant waited for ever (its edge to a job that no longer exists never satisfied)."""
    parent, child = await queue.enqueue_many([_job(), _job(0)])
    await _claim(queue)
    # The outcome without the settling, as a worker that died in between leaves it.
    await pool.execute(
        "UPDATE jobs SET status = 'completed', finished_at = now(), lease_owner = NULL,"
        " lease_expires_at = NULL WHERE id = $1",
        parent,
    )

    await queue.delete_finished(parent)

    assert await pool.fetchval("SELECT count(*) FROM jobs WHERE id = $1", parent) == 0
    assert (await queue.get(child)).waiting_for == 0
    assert await _claim(queue) == [child]


async def test_a_long_chain_is_settled_a_bounded_number_of_levels_a_transaction(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    """All levels in one transaction held locks for seconds on a chain of thousands, and the
    rescuer's sweep waited behind them; the sweep now takes one bounded piece a call."""
    chain = (2 + SETTLE_TRANSACTIONS_INLINE) * MAX_LEVELS_PER_TRANSACTION + 10
    ids = await queue.enqueue_many([_job()] + [_job(i) for i in range(chain)])
    [first] = await _claim(queue)
    failure = Failure(first, "boom", 0, final=True)
    await queue.finish(worker_id="w1", outcomes=[failure.outcome()], settle_now=False)

    async def failed() -> int:
        count: int = await pool.fetchval("SELECT count(*) FROM jobs WHERE status = 'failed'")
        return count

    await queue.settle_dependants([first], max_transactions=1)
    assert await failed() == 1 + MAX_LEVELS_PER_TRANSACTION
    assert await queue.settle_stragglers(min_age_s=0) == 1  # the next level's parent
    assert await failed() == 1 + (1 + SETTLE_TRANSACTIONS_INLINE) * MAX_LEVELS_PER_TRANSACTION

    frontier = await pool.fetch("SELECT id FROM jobs WHERE dependants_unsettled")
    await queue.settle_dependants([r["id"] for r in frontier])  # every level left
    assert await failed() == len(ids)
    assert not await pool.fetchval("SELECT count(*) FROM jobs WHERE dependants_unsettled")


async def test_a_failed_chain_is_retried_whole_or_not_at_all(
    queue: Queue, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job retried with its dependency is refused when that one is refused in turn: else it
    waited for a job left failed. A bulk retry changes the oldest first, batch by batch."""
    a, b, c = await queue.enqueue_many([_job(max_attempts=1), _job(0), _job(1)])
    await _claim(queue)
    await queue.fail(worker_id="w1", failures=[Failure(a, "boom", 0, final=True)])
    assert {await _status(queue, j) for j in (b, c)} == {JobStatus.FAILED}

    assert await queue.retry_many([c, b]) == 0  # a stays failed: b is refused, and so c
    with pytest.raises(DependencyEndedError, match=f"dependency {b} is failed"):
        await queue.retry(c)

    # One job a batch, so that the chain crosses batches: the oldest goes first.
    monkeypatch.setattr(bulk, "BATCH_SIZE", 1)
    failed = JobFilter(statuses=(JobStatus.FAILED,))
    step = await retry_matching_step(queue, JobListing(pool), failed, limit=10)
    assert step.affected == 3
    for job in (a, b, c):
        assert await _claim(queue) == [job]
        await queue.complete(worker_id="w1", job_ids=[job])
