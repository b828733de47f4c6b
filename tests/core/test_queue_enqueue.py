"""enqueue: the stored row and its defaults, and the NOTIFY that wakes workers."""

import asyncio
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from core.notifications import next_notification
from queue_core.errors import InvalidJobError
from queue_core.jobs import NewJob
from queue_core.queue import Queue
from queue_core.states import JobStatus


async def test_enqueue_stores_a_pending_row_with_the_defaults(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    job_id = await queue.enqueue(NewJob(type="noop", payload={"n": 1, "tags": ["a"]}))

    row = await pool.fetchrow("SELECT *, now() AS db_now FROM jobs WHERE id = $1", job_id)
    assert row is not None
    assert row["type"] == "noop"
    assert row["payload"] == {"n": 1, "tags": ["a"]}
    assert row["status"] == JobStatus.PENDING
    assert row["queue"] == "default"
    assert row["priority"] == 0
    assert row["max_attempts"] == 3
    assert row["attempts"] == 0
    assert row["error_message"] is None
    assert row["scheduled_at"] is None
    assert row["lease_owner"] is None
    assert row["lease_expires_at"] is None
    assert row["started_at"] is None
    assert row["finished_at"] is None
    assert row["timeout_s"] is None
    assert row["cancel_requested_at"] is None
    assert abs(row["db_now"] - row["created_at"]) < timedelta(seconds=5)


async def test_enqueue_stores_the_given_queue_priority_attempts_and_schedule(
    queue: Queue,
) -> None:
    at = datetime.now(UTC) + timedelta(hours=1)
    job_id = await queue.enqueue(
        NewJob(
            type="report",
            payload={},
            queue="reports",
            priority=7,
            max_attempts=5,
            scheduled_at=at,
        )
    )

    job = await queue.get(job_id)
    assert (job.queue, job.priority, job.max_attempts, job.scheduled_at) == ("reports", 7, 5, at)
    assert job.status is JobStatus.PENDING


async def test_enqueue_notifies_queue_jobs_with_the_queue_name(
    queue: Queue, notifications: "asyncio.Queue[object]"
) -> None:
    await queue.enqueue(NewJob(type="noop", payload={}))
    assert await next_notification(notifications) == "default"

    await queue.enqueue(NewJob(type="noop", payload={}, queue="emails"))
    assert await next_notification(notifications) == "emails"


async def test_enqueue_with_a_past_schedule_notifies(
    queue: Queue, notifications: "asyncio.Queue[object]"
) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    await queue.enqueue(NewJob(type="noop", payload={}, queue="late", scheduled_at=past))
    assert await next_notification(notifications) == "late"


async def test_enqueue_scheduled_in_the_future_does_not_notify(
    queue: Queue, notifications: "asyncio.Queue[object]"
) -> None:
    future = datetime.now(UTC) + timedelta(hours=1)
    await queue.enqueue(NewJob(type="noop", payload={}, queue="later", scheduled_at=future))
    # Notifications arrive in commit order, so once the marker's arrives, a notification for
    # the scheduled job would already have been delivered before it.
    await queue.enqueue(NewJob(type="noop", payload={}, queue="marker"))

    assert await next_notification(notifications) == "marker"
    assert notifications.empty()


async def test_a_stored_payload_reads_back_whatever_numbers_postgresql_holds(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    # jsonb keeps numbers exactly. PostgreSQL writes 1e400.5 out in full, a float the fast
    # decoder refuses as out of range: the standard library's reading (inf) comes back
    # instead of an error, and the rest of the payload is read as usual.
    job_id = await queue.enqueue(NewJob(type="noop", payload={"n": 1}))
    await pool.execute(
        """UPDATE jobs SET payload = jsonb_build_object(
               'huge', 1e400 + 0.5, 'big', 1e400, 'text', 'é', 'list', '[1.5, null, true]'::jsonb)
           WHERE id = $1""",
        job_id,
    )

    job = await queue.get(job_id)

    assert job.payload == {
        "huge": float("inf"),
        "big": 10**400,
        "text": "é",
        "list": [1.5, None, True],
    }


# Payloads a Python caller may pass that PostgreSQL's jsonb cannot hold, or that are not JSON.
UNSTORABLE_PAYLOADS: list[Any] = [
    {"tags": {"a", "b"}},  # not JSON at all
    {"n": 10**5000},  # more digits than Python writes out
    {"ratio": math.nan},
    {"ratio": math.inf},
    {"name": "a\x00b"},
    {"path": "caf\udce9"},  # a file name decoded with surrogateescape
    {"a\x00": 1},
    ["not", "an", "object"],
]


@pytest.mark.parametrize("payload", UNSTORABLE_PAYLOADS)
async def test_a_payload_that_cannot_be_stored_fails_only_its_own_enqueue(
    queue: Queue, pool: asyncpg.Pool, payload: Any
) -> None:
    """Concurrent enqueues share one statement (group commit). A payload json.dumps refused
    raised its TypeError or ValueError from building that statement, and every other
    caller's enqueue failed with it; each of the others is a job of its own."""
    results = await asyncio.gather(
        queue.enqueue(NewJob(type="noop", payload={"n": 1})),
        queue.enqueue(NewJob(type="noop", payload=payload)),
        queue.enqueue(NewJob(type="noop", payload={"n": 2})),
        return_exceptions=True,
    )

    assert isinstance(results[1], InvalidJobError), results[1]
    assert "payload" in str(results[1])
    assert [type(r) for r in (results[0], results[2])] == [uuid.UUID, uuid.UUID], results
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 2
    # Jobs with unique keys are group-committed by a statement of their own.
    results = await asyncio.gather(
        queue.enqueue(NewJob(type="noop", payload={"n": 3}, unique_key="a")),
        queue.enqueue(NewJob(type="noop", payload=payload, unique_key="b")),
        queue.enqueue(NewJob(type="noop", payload={"n": 4}, unique_key="c")),
        return_exceptions=True,
    )
    assert isinstance(results[1], InvalidJobError), results[1]
    assert [type(r) for r in (results[0], results[2])] == [uuid.UUID, uuid.UUID], results
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 4
    with pytest.raises(InvalidJobError, match="payload"):
        await queue.enqueue_many([NewJob(type="noop", payload=payload)])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("type", ""),
        ("type", "x" * 256),
        ("type", "a\x00b"),
        ("queue", "q\udce9"),
        ("priority", 2**15),
        ("max_attempts", 0),
        ("max_attempts", 2**31),
        ("timeout_s", 0.0),
        ("timeout_s", -1.0),
        ("timeout_s", math.nan),
        ("timeout_s", math.inf),
        ("scheduled_at", datetime(1, 1, 1, tzinfo=UTC)),
        ("scheduled_at", datetime.max.replace(tzinfo=UTC)),
    ],
)
async def test_a_field_the_schema_refuses_is_refused_by_name_before_any_statement(
    queue: Queue, pool: asyncpg.Pool, field: str, value: object
) -> None:
    """The database's refusal named nothing (one message for every field), and in a caller's
    transaction (queue_core.transactional) aborted it; the field is named now, and the job
    refused before any statement, in a batch or alone."""
    job = NewJob(**{"type": "noop", "payload": {}, field: value})  # type: ignore[arg-type]
    for enqueue in (queue.enqueue, lambda j: queue.enqueue_many([j])):
        with pytest.raises(InvalidJobError, match=field):
            await enqueue(job)
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 0
