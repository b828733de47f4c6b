"""Enqueueing with keys (queue_core.keyed): idempotency keys give the first request's job back,
unique keys one job per key, both decided by the partial unique indexes under concurrency."""

import asyncio
import hashlib
from collections import Counter
from typing import TYPE_CHECKING

import asyncpg
import pytest

from core.notifications import next_notification
from queue_core.errors import IdempotencyKeyReusedError, JobStateConflictError
from queue_core.jobs import EnqueueOutcome, Idempotency, NewJob
from queue_core.queue import Queue
from queue_core.states import JobStatus

if TYPE_CHECKING:
    from queue_core.jobs import Enqueued

DAY_S = 86400.0


def _idempotent(key: str, body: str = "first", *, ttl_s: float = DAY_S) -> Idempotency:
    return Idempotency(key=key, fingerprint=hashlib.sha256(body.encode()).digest(), ttl_s=ttl_s)


def _job(**fields: object) -> NewJob:
    return NewJob(type="noop", payload={"n": 1}, **fields)  # type: ignore[arg-type]


async def _count(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM jobs")
    return count


async def _finish(queue: Queue, pool: asyncpg.Pool) -> None:
    """Run every due job to completion, as a worker would."""
    claimed = await queue.claim(worker_id="w", queues=["default"], limit=100, lease_s=30)
    await queue.complete(worker_id="w", job_ids=[job.id for job in claimed])
    assert await pool.fetchval("SELECT count(*) FROM jobs WHERE status = 'running'") == 0


# -- idempotency keys -------------------------------------------------------------------------


async def test_the_same_idempotency_key_and_request_give_the_same_job(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    first = await queue.enqueue_keyed(_job(idempotency=_idempotent("k1")))
    again = await queue.enqueue_keyed(_job(idempotency=_idempotent("k1")))

    assert first.outcome is EnqueueOutcome.CREATED
    assert again.id == first.id
    assert again.outcome is EnqueueOutcome.REPLAYED
    assert await _count(pool) == 1
    row = await pool.fetchrow("SELECT *, now() AS db_now FROM jobs WHERE id = $1", first.id)
    assert row is not None
    assert row["idempotency_key"] == "k1"
    assert row["idempotency_fingerprint"] == hashlib.sha256(b"first").digest()
    assert abs((row["idempotency_expires_at"] - row["db_now"]).total_seconds() - DAY_S) < 60


async def test_an_idempotency_key_replays_whatever_the_job_became(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    first = await queue.enqueue_keyed(_job(idempotency=_idempotent("k1")))
    await _finish(queue, pool)

    again = await queue.enqueue_keyed(_job(idempotency=_idempotent("k1")))

    assert (again.id, again.outcome) == (first.id, EnqueueOutcome.REPLAYED)
    assert await _count(pool) == 1


async def test_an_idempotency_key_with_another_request_is_refused(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    await queue.enqueue_keyed(_job(idempotency=_idempotent("k1", "first")))

    with pytest.raises(IdempotencyKeyReusedError, match="different request"):
        await queue.enqueue_keyed(_job(idempotency=_idempotent("k1", "second")))
    assert await _count(pool) == 1


async def test_an_expired_idempotency_key_may_be_used_again(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    old = await queue.enqueue_keyed(_job(idempotency=_idempotent("k1", "first")))
    await pool.execute(
        "UPDATE jobs SET idempotency_expires_at = now() - interval '1 second' WHERE id = $1",
        old.id,
    )

    new = await queue.enqueue_keyed(_job(idempotency=_idempotent("k1", "second")))

    assert new.outcome is EnqueueOutcome.CREATED
    assert new.id != old.id
    keys = {r["id"]: r["idempotency_key"] for r in await pool.fetch("SELECT * FROM jobs")}
    assert keys == {old.id: None, new.id: "k1"}  # the old job stays, its key freed


async def test_twenty_concurrent_requests_with_one_idempotency_key_make_one_job(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    results = await asyncio.gather(
        *(queue.enqueue_keyed(_job(idempotency=_idempotent("k-race"))) for _ in range(20))
    )

    assert len({r.id for r in results}) == 1
    assert Counter(r.outcome for r in results) == {
        EnqueueOutcome.CREATED: 1,
        EnqueueOutcome.REPLAYED: 19,
    }
    assert await _count(pool) == 1


async def test_idempotency_keys_are_distinct_keys(queue: Queue, pool: asyncpg.Pool) -> None:
    a = await queue.enqueue_keyed(_job(idempotency=_idempotent("billing/k")))
    b = await queue.enqueue_keyed(_job(idempotency=_idempotent("shipping/k")))

    assert a.id != b.id
    assert await _count(pool) == 2


# -- unique keys ------------------------------------------------------------------------------


async def test_a_unique_key_is_held_while_its_job_is_pending_or_running_then_freed(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    first = await queue.enqueue_keyed(_job(unique_key="report:42"))
    duplicate = await queue.enqueue_keyed(_job(unique_key="report:42"))
    assert (duplicate.id, duplicate.outcome) == (first.id, EnqueueOutcome.DUPLICATE)

    claimed = await queue.claim(worker_id="w", queues=["default"], limit=10, lease_s=30)
    assert [c.id for c in claimed] == [first.id]
    while_running = await queue.enqueue_keyed(_job(unique_key="report:42"))
    assert (while_running.id, while_running.outcome) == (first.id, EnqueueOutcome.DUPLICATE)

    await queue.complete(worker_id="w", job_ids=[first.id])
    after = await queue.enqueue_keyed(_job(unique_key="report:42"))

    assert after.outcome is EnqueueOutcome.CREATED
    assert after.id != first.id
    assert await _count(pool) == 2


async def test_fifty_concurrent_enqueues_of_one_unique_key_make_one_job(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    results = await asyncio.gather(
        *(queue.enqueue_keyed(_job(unique_key="sync:acme")) for _ in range(50))
    )

    assert len({r.id for r in results}) == 1
    assert Counter(r.outcome for r in results) == {
        EnqueueOutcome.CREATED: 1,
        EnqueueOutcome.DUPLICATE: 49,
    }
    assert await _count(pool) == 1


async def test_a_unique_period_holds_after_the_job_finished_and_ends_on_time(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    first = await queue.enqueue_keyed(_job(unique_key="digest", unique_for_s=3600))
    await _finish(queue, pool)
    assert (await queue.get(first.id)).status is JobStatus.COMPLETED

    within = await queue.enqueue_keyed(_job(unique_key="digest", unique_for_s=3600))
    assert (within.id, within.outcome) == (first.id, EnqueueOutcome.DUPLICATE)

    await pool.execute(  # the period is over
        "UPDATE jobs SET unique_until = now() - interval '1 second' WHERE id = $1", first.id
    )
    after = await queue.enqueue_keyed(_job(unique_key="digest", unique_for_s=3600))

    assert after.outcome is EnqueueOutcome.CREATED
    keys = {r["id"]: r["unique_key"] for r in await pool.fetch("SELECT * FROM jobs")}
    assert keys == {first.id: None, after.id: "digest"}
    record = await queue.get(after.id)
    assert record.unique_key == "digest"
    assert record.unique_until is not None


async def test_concurrent_enqueues_after_a_unique_period_ended_make_one_new_job(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    first = await queue.enqueue_keyed(_job(unique_key="digest", unique_for_s=60))
    await pool.execute(
        "UPDATE jobs SET unique_until = now() - interval '1 second' WHERE id = $1", first.id
    )

    results = await asyncio.gather(
        *(queue.enqueue_keyed(_job(unique_key="digest", unique_for_s=60)) for _ in range(30))
    )

    created = [r for r in results if r.outcome is EnqueueOutcome.CREATED]
    assert len(created) == 1
    assert {r.id for r in results} == {created[0].id}
    assert await _count(pool) == 2


async def test_a_retried_request_answers_with_its_own_job_before_the_unique_holder(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    first = await queue.enqueue_keyed(_job(unique_key="u", idempotency=_idempotent("k1")))

    again = await queue.enqueue_keyed(_job(unique_key="u", idempotency=_idempotent("k1")))
    other = await queue.enqueue_keyed(_job(unique_key="u", idempotency=_idempotent("k2")))

    assert (again.id, again.outcome) == (first.id, EnqueueOutcome.REPLAYED)
    assert (other.id, other.outcome) == (first.id, EnqueueOutcome.DUPLICATE)
    assert await _count(pool) == 1


# -- through enqueue, enqueue_many and batches -------------------------------------------------


async def test_enqueue_and_enqueue_many_honour_keys(queue: Queue, pool: asyncpg.Pool) -> None:
    one = await queue.enqueue(_job(unique_key="u"))
    many = await queue.enqueue_many([_job(unique_key="u"), _job(), _job(unique_key="v")])

    assert many[0] == one
    assert len(set(many)) == 3
    assert await _count(pool) == 3


async def test_a_batch_reports_each_jobs_outcome_in_order(queue: Queue, pool: asyncpg.Pool) -> None:
    held = await queue.enqueue_keyed(_job(unique_key="u"))

    results: list[Enqueued] = await queue.enqueue_batch(
        [
            _job(),
            _job(unique_key="u"),
            _job(unique_key="w"),
            _job(unique_key="w"),
            _job(idempotency=_idempotent("k")),
            _job(idempotency=_idempotent("k")),
        ]
    )

    outcomes = [r.outcome.value for r in results]
    assert outcomes == ["created", "duplicate", "created", "duplicate", "created", "replayed"]
    assert results[1].id == held.id
    assert results[3].id == results[2].id
    assert results[5].id == results[4].id
    assert await _count(pool) == 4


async def test_a_batch_with_keys_is_all_or_nothing(queue: Queue, pool: asyncpg.Pool) -> None:
    await queue.enqueue_keyed(_job(idempotency=_idempotent("k", "first")))

    with pytest.raises(IdempotencyKeyReusedError):
        await queue.enqueue_batch(
            [_job(), _job(unique_key="new"), _job(idempotency=_idempotent("k", "second"))]
        )

    assert await _count(pool) == 1


async def test_a_keyed_job_wakes_its_queue_and_a_duplicate_does_not(
    queue: Queue, notifications: "asyncio.Queue[object]"
) -> None:
    await queue.enqueue_keyed(_job(unique_key="u", queue="mail"))
    assert await next_notification(notifications) == "mail"

    await queue.enqueue_keyed(_job(unique_key="u", queue="mail"))
    await queue.enqueue(_job(queue="other"))
    assert await next_notification(notifications) == "other"  # nothing for the duplicate


async def test_retrying_a_failed_job_whose_unique_key_was_taken_is_a_conflict(
    queue: Queue,
) -> None:
    first = await queue.enqueue_keyed(_job(unique_key="u"))
    await queue.cancel(first.id)
    second = await queue.enqueue_keyed(_job(unique_key="u"))
    assert second.outcome is EnqueueOutcome.CREATED

    with pytest.raises(JobStateConflictError, match="unique key"):
        await queue.retry(first.id)
    assert (await queue.get(first.id)).status is JobStatus.CANCELLED


# -- group commit -----------------------------------------------------------------------------


async def test_concurrent_keyed_enqueues_share_statements_and_keep_every_rule(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    """Keyed enqueues made at once are group-committed (one INSERT for many) and each still
    gets what the rule says: new jobs, the replayed job for a retried key, the holder for a
    taken unique key, and a refusal for a key reused with another request, in one group."""
    jobs = [
        *(_job(idempotency=_idempotent(f"own-{i}")) for i in range(20)),
        *(_job(idempotency=_idempotent("shared")) for _ in range(10)),
        *(_job(unique_key="one-per-key") for _ in range(10)),
        _job(idempotency=_idempotent("shared", body="another request")),
    ]
    batches_before = queue._keyed_enqueuer.batches_written  # noqa: SLF001 - the mechanism

    results = await asyncio.gather(
        *(queue.enqueue_keyed(job) for job in jobs), return_exceptions=True
    )

    own, shared, unique, reused = results[:20], results[20:30], results[30:40], results[40]
    assert all(r.outcome is EnqueueOutcome.CREATED for r in own)  # type: ignore[union-attr]
    assert len({r.id for r in own}) == 20  # type: ignore[union-attr]
    outcomes: Counter[EnqueueOutcome] = Counter(r.outcome for r in shared)  # type: ignore[union-attr]
    assert outcomes == {EnqueueOutcome.CREATED: 1, EnqueueOutcome.REPLAYED: 9}
    assert len({r.id for r in shared}) == 1  # type: ignore[union-attr]
    outcomes = Counter(r.outcome for r in unique)  # type: ignore[union-attr]
    assert outcomes == {EnqueueOutcome.CREATED: 1, EnqueueOutcome.DUPLICATE: 9}
    assert isinstance(reused, IdempotencyKeyReusedError)
    assert await _count(pool) == 22
    # Written together: fewer INSERTs than jobs, not one statement each.
    assert queue._keyed_enqueuer.batches_written - batches_before < len(jobs)  # noqa: SLF001
