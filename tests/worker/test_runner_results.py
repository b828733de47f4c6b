"""What the Runner stores besides the status: a handler's result, the errors of past attempts,
and a Snooze that runs the job later without spending an attempt."""

import math
import uuid
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import asyncpg
import pytest

from helpers import eventually
from queue_core.jobs import NewJob
from queue_core.limits import MAX_ERRORS_KEPT, MAX_SNOOZE_S
from queue_core.queue import Queue
from queue_core.states import JobStatus
from queue_core.tasks import JobContext, Snooze, TaskRegistry
from queue_worker.runner import ResultError, encode_result
from worker.harness import StartWorker, wait_for_status


async def _row(db: asyncpg.Pool, job_id: uuid.UUID) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
    assert row is not None
    return row


# -- results ----------------------------------------------------------------------------------


async def test_a_handlers_return_value_is_stored_as_the_result(
    queue: Queue, pool: asyncpg.Pool, start_worker: StartWorker
) -> None:
    registry = TaskRegistry()

    @registry.task("answer")
    async def answer(job: JobContext) -> dict[str, Any]:
        return {"answer": 42, "echo": job.payload["q"], "nested": [1, 2.5, None, "é😀"]}

    @registry.task("nothing")
    async def nothing(_job: JobContext) -> None:
        return None

    @registry.task("in_a_thread")
    def in_a_thread(_job: JobContext) -> list[int]:
        return [1, 2, 3]

    ids = [
        await queue.enqueue(NewJob(type=name, payload={"q": "life"}))
        for name in ("answer", "nothing", "in_a_thread")
    ]
    await start_worker(registry)

    for job_id in ids:
        await wait_for_status(queue, job_id, JobStatus.COMPLETED)
    results = [(await _row(pool, job_id))["result"] for job_id in ids]

    assert results == [
        {"answer": 42, "echo": "life", "nested": [1, 2.5, None, "é😀"]},
        None,  # SQL NULL, not JSON null
        [1, 2, 3],
    ]
    assert await pool.fetchval("SELECT result IS NULL FROM jobs WHERE id = $1", ids[1])


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("x" * 200, "the result is too large: 202 bytes of JSON, at most 100"),
        ({1, 2}, "the result is not JSON-serialisable: TypeError"),
        ({"x": math.nan}, "the result is not JSON-serialisable: ValueError"),
        ({"text": "a\x00b"}, "NUL character"),
        ("\ud800", "unpaired surrogate"),
    ],
    ids=["too-big", "a-set", "nan", "nul", "lone-surrogate"],
)
async def test_a_result_that_cannot_be_stored_fails_the_attempt_which_is_retried(
    queue: Queue, pool: asyncpg.Pool, start_worker: StartWorker, value: object, says: str
) -> None:
    registry = TaskRegistry()

    @registry.task("odd_result")
    async def odd_result(job: JobContext) -> object:
        return value if job.attempt == 1 else {"fine": True}

    job_id = await queue.enqueue(NewJob(type="odd_result", payload={"a": 1}))
    # A job finishing normally beside it: one bad value must not fail the batch's statement.
    neighbour = await queue.enqueue(NewJob(type="odd_result", payload={"b": 2}, max_attempts=1))
    await start_worker(registry, max_result_bytes=100, concurrency=2)

    job = await wait_for_status(queue, job_id, JobStatus.COMPLETED)
    await wait_for_status(queue, neighbour, JobStatus.FAILED)
    row = await _row(pool, job_id)

    assert job.attempts == 2
    assert row["result"] == {"fine": True}
    (first,) = row["errors"]
    assert first["attempt"] == 1
    assert says in first["error"], first["error"]


def test_encode_result_tells_a_nul_from_the_text_backslash_u0000() -> None:
    # The text \u0000 (a backslash and five characters) can be stored; only a real NUL cannot.
    assert encode_result({"path": "C:\\u0000"}, 100) == '{"path":"C:\\\\u0000"}'
    with pytest.raises(ResultError, match="NUL"):
        encode_result(["\\\x00"], 100)  # a backslash, then a NUL


# -- errors of past attempts -------------------------------------------------------------------


async def test_each_failed_attempt_appends_its_error_newest_last(
    queue: Queue, pool: asyncpg.Pool, start_worker: StartWorker
) -> None:
    registry = TaskRegistry()

    @registry.task("flaky")
    async def flaky(job: JobContext) -> None:
        raise ConnectionError(f"down on attempt {job.attempt}")

    before = datetime.now(UTC)
    job_id = await queue.enqueue(NewJob(type="flaky", payload={"a": 1}, max_attempts=3))
    await start_worker(registry)

    await wait_for_status(queue, job_id, JobStatus.FAILED)
    errors = (await _row(pool, job_id))["errors"]

    assert [(e["attempt"], e["error"]) for e in errors] == [
        (n, f"ConnectionError: down on attempt {n}") for n in (1, 2, 3)
    ]
    stamps = [datetime.fromisoformat(e["at"]) for e in errors]
    assert stamps == sorted(stamps)
    assert before - timedelta(seconds=5) < stamps[0] <= datetime.now(UTC)


async def test_only_the_newest_errors_are_kept(
    queue: Queue, pool: asyncpg.Pool, start_worker: StartWorker
) -> None:
    registry = TaskRegistry()

    @registry.task("hopeless")
    async def hopeless(job: JobContext) -> None:
        raise RuntimeError(f"attempt {job.attempt} " + "x" * 5000)  # bounded too

    attempts = MAX_ERRORS_KEPT + 5
    job_id = await queue.enqueue(NewJob(type="hopeless", payload={"a": 1}, max_attempts=attempts))
    await start_worker(registry)

    await wait_for_status(queue, job_id, JobStatus.FAILED, timeout_s=30)
    errors = (await _row(pool, job_id))["errors"]

    assert [e["attempt"] for e in errors] == list(range(6, attempts + 1))
    assert all(len(e["error"]) == 2000 for e in errors)


async def test_a_completed_job_keeps_the_errors_of_its_earlier_attempts(
    queue: Queue, pool: asyncpg.Pool, start_worker: StartWorker
) -> None:
    registry = TaskRegistry()

    @registry.task("second_time_lucky")
    async def second_time_lucky(job: JobContext) -> str:
        if job.attempt == 1:
            raise TimeoutError("first try")
        return "ok"

    job_id = await queue.enqueue(NewJob(type="second_time_lucky", payload={"a": 1}))
    await start_worker(registry)

    await wait_for_status(queue, job_id, JobStatus.COMPLETED)
    row = await _row(pool, job_id)

    assert row["error_message"] is None
    assert row["result"] == "ok"
    assert [(e["attempt"], e["error"]) for e in row["errors"]] == [(1, "TimeoutError: first try")]


async def test_a_timed_out_attempt_is_in_the_errors(
    queue: Queue, pool: asyncpg.Pool, start_worker: StartWorker
) -> None:
    registry = TaskRegistry()

    @registry.task("slow", timeout_s=0.05)
    async def slow(job: JobContext) -> None:
        if job.attempt == 1:
            await eventually(_never, timeout_s=5)

    job_id = await queue.enqueue(NewJob(type="slow", payload={"a": 1}))
    await start_worker(registry)

    await wait_for_status(queue, job_id, JobStatus.COMPLETED)

    errors = (await _row(pool, job_id))["errors"]
    assert [(e["attempt"], e["error"]) for e in errors] == [(1, "timed out after 0.05 s")]


async def _never() -> bool:
    return False


# -- Snooze -----------------------------------------------------------------------------------


async def test_snooze_runs_the_job_again_later_without_spending_an_attempt(
    queue: Queue, pool: asyncpg.Pool, start_worker: StartWorker
) -> None:
    registry = TaskRegistry()
    runs: list[tuple[int, datetime]] = []

    @registry.task("patient")
    async def patient(job: JobContext) -> str:
        runs.append((job.attempt, datetime.now(UTC)))
        if len(runs) < 3:
            raise Snooze(0.3)
        return "done"

    # One attempt only: a snooze that spent it would fail the job on the second run.
    job_id = await queue.enqueue(NewJob(type="patient", payload={"a": 1}, max_attempts=1))
    await start_worker(registry)

    await eventually(lambda: _status_is(queue, job_id, JobStatus.PENDING, snoozed=True))
    snoozed = await _row(pool, job_id)
    job = await wait_for_status(queue, job_id, JobStatus.COMPLETED)
    row = await _row(pool, job_id)

    assert snoozed["attempts"] == 0
    assert snoozed["scheduled_at"] > snoozed["updated_at"] + timedelta(seconds=0.2)
    assert [attempt for attempt, _ in runs] == [1, 1, 1]
    assert all(b - a >= timedelta(seconds=0.25) for (_, a), (_, b) in pairwise(runs))
    assert job.attempts == 1
    assert row["errors"] is None
    assert row["error_message"] is None
    assert row["result"] == "done"


async def _status_is(queue: Queue, job_id: uuid.UUID, status: JobStatus, *, snoozed: bool) -> bool:
    job = await queue.get(job_id)
    return job.status is status and (not snoozed or job.scheduled_at is not None)


async def test_a_snoozed_job_whose_cancel_was_requested_is_cancelled(
    queue: Queue, start_worker: StartWorker
) -> None:
    registry = TaskRegistry()
    job_ids: list[uuid.UUID] = []

    @registry.task("snoozer")
    async def snoozer(job: JobContext) -> None:
        await queue.cancel(job.id)  # requested while it runs
        raise Snooze(60)

    job_ids.append(await queue.enqueue(NewJob(type="snoozer", payload={"a": 1})))
    await start_worker(registry)

    job = await wait_for_status(queue, job_ids[0], JobStatus.CANCELLED)
    assert job.attempts == 1


@pytest.mark.parametrize("seconds", [0, -1, MAX_SNOOZE_S + 1, math.nan, math.inf])
async def test_snooze_out_of_bounds_fails_the_attempt_saying_why(
    queue: Queue, start_worker: StartWorker, seconds: float
) -> None:
    registry = TaskRegistry()

    @registry.task("bad_snooze")
    async def bad_snooze(_job: JobContext) -> None:
        raise Snooze(seconds)

    job_id = await queue.enqueue(NewJob(type="bad_snooze", payload={"a": 1}, max_attempts=1))
    await start_worker(registry)

    job = await wait_for_status(queue, job_id, JobStatus.FAILED)
    assert job.error_message == (
        f"ValueError: Snooze seconds must be above 0 and at most {MAX_SNOOZE_S:g}"
    )


class _LateSnooze(Snooze):
    """A Snooze that sets its delay itself, past the check in Snooze.__init__."""

    def __init__(self, seconds: object) -> None:
        super().__init__(1)
        self.seconds = seconds  # type: ignore[assignment]


@pytest.mark.parametrize("seconds", [math.inf, 10**400, timedelta(minutes=5)])
async def test_a_snooze_whose_delay_was_set_around_the_check_fails_only_its_own_job(
    queue: Queue, start_worker: StartWorker, seconds: object
) -> None:
    """Its delay went into the statement that records a whole batch of outcomes, which the
    database then refused for all of them: every job of the batch ran again later."""
    registry = TaskRegistry()
    ran: list[int] = []

    @registry.task("step")
    async def step(job: JobContext) -> None:
        ran.append(job.payload["n"])
        if job.payload["n"] == 0:
            raise _LateSnooze(seconds)

    ids = await queue.enqueue_many(
        [NewJob(type="step", payload={"n": n}, max_attempts=1) for n in range(10)]
    )
    await start_worker(registry)

    job = await wait_for_status(queue, ids[0], JobStatus.FAILED)
    for job_id in ids[1:]:
        await wait_for_status(queue, job_id, JobStatus.COMPLETED)
    assert job.error_message is not None
    assert job.error_message.startswith(("ValueError: Snooze", "TypeError: Snooze"))
    assert sorted(ran) == list(range(10))  # each job ran once


def test_snooze_takes_a_number_of_seconds() -> None:
    assert Snooze(MAX_SNOOZE_S).seconds == MAX_SNOOZE_S
    with pytest.raises(TypeError, match="not str"):
        Snooze("60")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not bool"):
        Snooze(True)  # noqa: FBT003 - the case under test
