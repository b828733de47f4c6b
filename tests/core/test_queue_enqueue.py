"""enqueue: the stored row and its defaults, and the NOTIFY that wakes workers."""

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg

from core.notifications import next_notification
from queue_core.jobs import NewJob
from queue_core.queue import Queue
from queue_core.states import JobStatus

if TYPE_CHECKING:
    import asyncio


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
