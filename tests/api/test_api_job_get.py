"""GET /v1/jobs/{id}: every field of a job, and ``?wait=S``, which answers once the job finishes
(completed here through the Queue API, as a worker does) or when S runs out; the per-process
waiter that serves it polls only while someone waits and forgets a waiter whose request ends."""

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from api.support import ApiClient, ClientFactory, assert_no_internals, error_body, problem_text
from helpers import eventually
from queue_api.job_waiter import JobWaiter
from queue_core.db import create_pool
from queue_core.jobs import NewJob, Outcome, OutcomeKind
from queue_core.keys import KeyStore, Scope
from queue_core.listing import JobListing
from queue_core.queue import Queue

WORKER = "test-host:1:cafe"
ALL_FIELDS = {
    "id",
    "type",
    "payload",
    "queue",
    "priority",
    "status",
    "attempts",
    "max_attempts",
    "scheduled_at",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "worker",
    "lease_expires_at",
    "timeout_s",
    "cancel_requested_at",
    "error_message",
    "result",
    "errors",
    "unique_key",
    "unique_until",
    "concurrency_key",
    "waiting_for",
    "depends_on",
}


@pytest.fixture(name="pool")
async def fx_pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(db_url, max_size=3)
    yield pool
    await pool.close()


@pytest.fixture(name="queue")
def fx_queue(pool: asyncpg.Pool) -> Queue:
    return Queue(pool)


async def add(jobs: Queue, **fields: Any) -> uuid.UUID:
    (job_id,) = await jobs.enqueue_many([NewJob(type="noop", payload={"n": 1}, **fields)])
    return job_id


async def claim(queue: Queue, job_queue: str = "default") -> uuid.UUID:
    (job,) = await queue.claim(worker_id=WORKER, queues=[job_queue], limit=1, lease_s=30)
    return job.id


# -- the whole job ------------------------------------------------------------------------


async def test_a_pending_job_shows_every_field(client: ApiClient, queue: Queue) -> None:
    job_id = await add(queue, queue="mail", priority=5, max_attempts=4, timeout_s=12.5)

    response = await client.get(f"/v1/jobs/{job_id}")

    assert response.status_code == 200, response.text
    job = response.json()
    assert set(job) == ALL_FIELDS
    assert job["id"] == str(job_id)
    assert (job["type"], job["payload"], job["queue"]) == ("noop", {"n": 1}, "mail")
    assert (job["priority"], job["max_attempts"], job["timeout_s"]) == (5, 4, 12.5)
    assert (job["status"], job["attempts"]) == ("pending", 0)
    assert job["worker"] is job["lease_expires_at"] is job["started_at"] is None
    assert job["result"] is None
    assert job["errors"] == []


async def test_a_running_job_names_its_worker_and_lease(client: ApiClient, queue: Queue) -> None:
    job_id = await add(queue)
    await claim(queue)

    job = (await client.get(f"/v1/jobs/{job_id}")).json()

    assert (job["status"], job["attempts"], job["worker"]) == ("running", 1, WORKER)
    assert job["lease_expires_at"] is not None
    assert job["started_at"] is not None


async def test_a_finished_job_shows_its_result_and_the_errors_of_past_attempts(
    client: ApiClient, queue: Queue, db: asyncpg.Connection
) -> None:
    job_id = await add(queue)
    await claim(queue)
    await queue.complete(worker_id=WORKER, job_ids=[job_id])
    past = [
        {"attempt": 1, "at": "2026-12-04T10:00:00Z", "error": "TimeoutError: slow"},
        {"attempt": 2, "at": "2026-12-04T10:01:00Z", "error": "RuntimeError: boom"},
    ]
    # What the worker's side stores with the completion (written by it, read here).
    await db.execute(
        "UPDATE jobs SET result = $2::jsonb, errors = $3::jsonb WHERE id = $1",
        job_id,
        json.dumps({"sent": True, "ids": [1, 2]}),
        json.dumps(past),
    )

    job = (await client.get(f"/v1/jobs/{job_id}")).json()

    assert job["status"] == "completed"
    assert job["finished_at"] is not None
    assert job["worker"] is job["lease_expires_at"] is None
    assert job["result"] == {"sent": True, "ids": [1, 2]}
    assert job["errors"] == past  # oldest first, newest last


async def test_a_cancel_request_on_a_running_job_shows(client: ApiClient, queue: Queue) -> None:
    job_id = await add(queue)
    await claim(queue)
    await queue.cancel(job_id)

    job = (await client.get(f"/v1/jobs/{job_id}")).json()

    assert job["status"] == "running"
    assert job["cancel_requested_at"] is not None


async def test_an_unknown_job_is_a_404_and_a_malformed_id_a_400(shared_client: ApiClient) -> None:
    unknown = await shared_client.get(f"/v1/jobs/{uuid.uuid4()}")
    malformed = await shared_client.get("/v1/jobs/not-a-uuid")

    assert unknown.status_code == 404
    assert "not found" in error_body(unknown)["detail"]
    assert malformed.status_code == 400
    assert_no_internals(malformed)


async def test_a_job_of_a_queue_the_key_may_not_use_is_a_403_not_naming_the_queue(
    make_client: ClientFactory, db_url: str, queue: Queue, pool: asyncpg.Pool
) -> None:
    theirs = await add(queue, queue="secret-queue")
    key = await KeyStore(pool).create(name="reader", scopes=[Scope.JOBS_READ], queues=["mine"])

    async with make_client(db_url, key=key.secret) as client:
        response = await client.get(f"/v1/jobs/{theirs}", params={"wait": 1})

    assert response.status_code == 403
    assert "secret-queue" not in error_body(response)["detail"]


# -- ?wait=S ----------------------------------------------------------------------------------


async def _fail_final(db_url: str, job_id: uuid.UUID) -> None:
    pool = await create_pool(db_url, max_size=1)
    try:
        outcome = Outcome(job_id, OutcomeKind.FAILED_FINAL, "RuntimeError: no")
        await Queue(pool).finish(worker_id=WORKER, outcomes=[outcome])
    finally:
        await pool.close()


async def test_wait_answers_as_soon_as_a_worker_finishes_the_job(
    client: ApiClient, queue: Queue, db_url: str
) -> None:
    job_id = await add(queue)
    await claim(queue)
    # The test client runs the request to its end before this loop runs again: the worker's
    # side acts from a thread of its own, as another process would.
    finisher = threading.Timer(0.3, lambda: asyncio.run(_fail_final(db_url, job_id)))

    started = time.monotonic()  # before the timer starts: elapsed cannot come out short
    finisher.start()
    response = await client.get(f"/v1/jobs/{job_id}", params={"wait": 20})
    elapsed = time.monotonic() - started
    finisher.join()

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "failed"
    assert response.json()["error_message"] == "RuntimeError: no"
    assert 0.3 <= elapsed < 5  # woken by the poll, long before the 20 s


async def test_wait_answers_the_unfinished_job_when_the_time_runs_out(
    client: ApiClient, queue: Queue
) -> None:
    job_id = await add(queue)

    started = time.monotonic()
    response = await client.get(f"/v1/jobs/{job_id}", params={"wait": 0.4})
    elapsed = time.monotonic() - started

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "pending"
    assert 0.4 <= elapsed < 3


async def test_wait_on_a_finished_job_answers_at_once(client: ApiClient, queue: Queue) -> None:
    job_id = await add(queue)
    await queue.cancel(job_id)

    started = time.monotonic()
    response = await client.get(f"/v1/jobs/{job_id}", params={"wait": 30})

    assert response.json()["status"] == "cancelled"
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("wait", ["0", "-1", "60.5", "61", "nan", "inf", "soon"])
async def test_a_wait_outside_0_to_60_seconds_is_a_400(shared_client: ApiClient, wait: str) -> None:
    response = await shared_client.get(f"/v1/jobs/{uuid.uuid4()}?wait={wait}")

    assert response.status_code == 400, response.text
    assert "wait" in problem_text(error_body(response))
    assert_no_internals(response)


# -- the waiter ------------------------------------------------------------------------------


async def test_one_poller_wakes_every_waiter_of_a_job_and_stops_when_nobody_waits(
    pool: asyncpg.Pool, queue: Queue
) -> None:
    job_id, other = await add(queue), await add(queue)
    waiter = JobWaiter(JobListing(pool), poll_interval_s=0.02)
    waits = [asyncio.create_task(waiter.wait(job_id, 10)) for _ in range(3)]
    late = asyncio.create_task(waiter.wait(other, 0.2))
    await eventually(lambda: _true(waiter.waiting == 4))
    assert waiter.polling

    await queue.cancel(job_id)

    assert await asyncio.gather(*waits) == [True, True, True]
    assert await late is False
    assert waiter.waiting == 0
    await eventually(lambda: _true(not waiter.polling))
    await waiter.close()


async def test_a_waiter_whose_request_is_cancelled_is_forgotten_at_once(
    pool: asyncpg.Pool, queue: Queue
) -> None:
    job_id = await add(queue)
    waiter = JobWaiter(JobListing(pool), poll_interval_s=0.02)
    task = asyncio.create_task(waiter.wait(job_id, 30))
    await eventually(lambda: _true(waiter.waiting == 1))

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert waiter.waiting == 0
    await eventually(lambda: _true(not waiter.polling))


async def test_past_the_waiter_limit_a_wait_returns_at_once_without_waiting(
    pool: asyncpg.Pool, queue: Queue
) -> None:
    job_id = await add(queue)
    waiter = JobWaiter(JobListing(pool), poll_interval_s=0.02, max_waiters=2)
    held = [asyncio.create_task(waiter.wait(job_id, 30)) for _ in range(2)]
    await eventually(lambda: _true(waiter.waiting == 2))

    started = time.monotonic()
    assert await waiter.wait(job_id, 30) is None
    assert time.monotonic() - started < 0.5

    for task in held:
        task.cancel()
    await asyncio.gather(*held, return_exceptions=True)
    assert waiter.waiting == 0
    await waiter.close()


async def _true(value: bool) -> bool:  # noqa: FBT001 - eventually() wants an awaitable
    return value
