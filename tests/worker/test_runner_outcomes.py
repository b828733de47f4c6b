"""What the Runner records for each way a handler can end: success, error, permanent error, no
handler at all, and a sync handler."""

import asyncio
import sys
import threading
import uuid
from collections.abc import Sequence

import asyncpg
import pytest

from queue_core.jobs import NewJob
from queue_core.queue import Queue
from queue_core.states import JobStatus
from queue_core.tasks import JobContext, PermanentError, TaskRegistry
from worker.harness import RecordingQueue, StartWorker, wait_for_status


async def test_a_successful_job_is_completed(queue: Queue, start_worker: StartWorker) -> None:
    registry = TaskRegistry()
    seen: list[JobContext] = []

    @registry.task("greet")
    async def greet(job: JobContext) -> None:
        seen.append(job)

    job_id = await queue.enqueue(NewJob(type="greet", payload={"name": "Ada"}, queue="q"))
    await start_worker(registry, queues=("q",))

    job = await wait_for_status(queue, job_id, JobStatus.COMPLETED)

    assert job.attempts == 1
    assert job.error_message is None
    assert job.finished_at is not None
    assert job.started_at is not None
    assert [(s.id, s.type, s.payload, s.queue, s.attempt, s.max_attempts) for s in seen] == [
        (job_id, "greet", {"name": "Ada"}, "q", 1, 3)
    ]


async def test_a_failing_job_is_retried_with_backoff_then_failed(
    queue: Queue, start_worker: StartWorker
) -> None:
    registry = TaskRegistry()
    attempts: list[int] = []

    @registry.task("flaky")
    async def flaky(job: JobContext) -> None:
        attempts.append(job.attempt)
        raise ConnectionError(f"upstream down on attempt {job.attempt}")

    job_id = await queue.enqueue(NewJob(type="flaky", payload={}, max_attempts=3))
    await start_worker(registry)

    job = await wait_for_status(queue, job_id, JobStatus.FAILED)

    assert attempts == [1, 2, 3]
    assert job.attempts == 3
    assert job.error_message == "ConnectionError: upstream down on attempt 3"
    assert job.finished_at is not None


async def test_a_job_that_fails_once_then_succeeds_is_completed(
    queue: Queue, start_worker: StartWorker
) -> None:
    registry = TaskRegistry()

    @registry.task("second_time_lucky")
    async def second_time_lucky(job: JobContext) -> None:
        if job.attempt == 1:
            raise TimeoutError("first try")

    job_id = await queue.enqueue(NewJob(type="second_time_lucky", payload={}))
    await start_worker(registry)

    job = await wait_for_status(queue, job_id, JobStatus.COMPLETED)

    assert job.attempts == 2
    assert job.error_message is None  # the earlier attempt's error is cleared


async def test_a_permanent_error_fails_the_job_after_one_attempt(
    queue: Queue, start_worker: StartWorker
) -> None:
    registry = TaskRegistry()
    attempts: list[int] = []

    @registry.task("reject")
    async def reject(job: JobContext) -> None:
        attempts.append(job.attempt)
        raise PermanentError("recipient does not exist")

    job_id = await queue.enqueue(NewJob(type="reject", payload={}, max_attempts=5))
    await start_worker(registry)

    job = await wait_for_status(queue, job_id, JobStatus.FAILED)

    assert attempts == [1]
    assert job.attempts == 1
    assert job.error_message == "PermanentError: recipient does not exist"


async def test_a_job_of_an_unknown_type_fails_at_once(
    queue: Queue, start_worker: StartWorker
) -> None:
    job_id = await queue.enqueue(NewJob(type="no_such_task", payload={}, max_attempts=5))
    await start_worker(TaskRegistry())

    job = await wait_for_status(queue, job_id, JobStatus.FAILED)

    assert job.attempts == 1
    assert job.error_message == "no handler registered for job type 'no_such_task'"


async def test_a_sync_handler_runs_in_a_thread_and_completes(
    queue: Queue, start_worker: StartWorker
) -> None:
    registry = TaskRegistry()
    threads: list[int] = []

    @registry.task("blocking")
    def blocking(job: JobContext) -> None:
        threads.append(threading.get_ident())
        if job.payload.get("fail"):
            raise ValueError("sync failure")

    ok = await queue.enqueue(NewJob(type="blocking", payload={}))
    bad = await queue.enqueue(NewJob(type="blocking", payload={"fail": True}, max_attempts=1))
    await start_worker(registry)

    await wait_for_status(queue, ok, JobStatus.COMPLETED)
    failed = await wait_for_status(queue, bad, JobStatus.FAILED)

    assert failed.error_message == "ValueError: sync failure"
    assert threads
    assert threading.get_ident() not in threads


async def test_a_long_error_message_is_truncated(queue: Queue, start_worker: StartWorker) -> None:
    registry = TaskRegistry()

    @registry.task("verbose")
    async def verbose(_job: JobContext) -> None:
        raise RuntimeError("x" * 10_000)

    job_id = await queue.enqueue(NewJob(type="verbose", payload={}, max_attempts=1))
    await start_worker(registry)

    job = await wait_for_status(queue, job_id, JobStatus.FAILED)

    assert job.error_message is not None
    assert job.error_message.startswith("RuntimeError: xxx")
    assert len(job.error_message) == 2000


async def test_a_handler_calling_sys_exit_fails_its_attempt_and_the_worker_goes_on(
    queue: Queue, start_worker: StartWorker
) -> None:
    """SystemExit (and KeyboardInterrupt) are not Exceptions: raised in a handler, async or
    sync (its thread hands it over), they left the event loop and ended the worker, leaving
    every other running job to wait for its lease to run out."""
    registry = TaskRegistry()

    @registry.task("quits")
    async def quits(_job: JobContext) -> None:
        sys.exit(3)

    @registry.task("quits_in_a_thread")
    def quits_in_a_thread(_job: JobContext) -> None:
        raise KeyboardInterrupt

    @registry.task("works")
    async def works(_job: JobContext) -> None:
        await asyncio.sleep(0.05)

    quit_ids = await queue.enqueue_many(
        [
            NewJob(type="quits", payload={}, max_attempts=1),
            NewJob(type="quits_in_a_thread", payload={}, max_attempts=1),
        ]
    )
    work_ids = await queue.enqueue_many([NewJob(type="works", payload={}) for _ in range(5)])
    await start_worker(registry)

    failed = [await wait_for_status(queue, i, JobStatus.FAILED, timeout_s=5) for i in quit_ids]
    assert [job.error_message for job in failed] == ["SystemExit: 3", "KeyboardInterrupt: "]
    for job_id in work_ids:
        await wait_for_status(queue, job_id, JobStatus.COMPLETED, timeout_s=5)
    later = await queue.enqueue(NewJob(type="works", payload={}))
    await wait_for_status(queue, later, JobStatus.COMPLETED, timeout_s=5)  # still working


async def test_a_handler_raising_cancelled_error_or_generator_exit_fails_its_attempt(
    queue: Queue, start_worker: StartWorker
) -> None:
    """CancelledError raised by the handler itself (no stop was asked of its attempt: e.g. it
    awaited a future someone else cancelled), GeneratorExit and any BaseException: the
    job's task ended with them, nothing recorded or logged, and the job stayed running until
    its lease ran out (for ever, with no rescuer)."""
    registry = TaskRegistry()

    @registry.task("cancels_itself")
    async def cancels_itself(_job: JobContext) -> None:
        raise asyncio.CancelledError

    @registry.task("cancels_itself_in_a_thread")
    def cancels_itself_in_a_thread(_job: JobContext) -> None:
        raise asyncio.CancelledError

    @registry.task("generator_exit")
    async def generator_exit(_job: JobContext) -> None:
        raise GeneratorExit

    @registry.task("base_exception")
    async def base_exception(_job: JobContext) -> None:
        raise BaseException("of its own")  # noqa: TRY002 - what a hostile handler raises

    job_ids = await queue.enqueue_many(
        [NewJob(type=name, payload={}, max_attempts=1) for name in registry.names()]
    )
    await start_worker(registry, lease_s=60.0)

    failed = [await wait_for_status(queue, i, JobStatus.FAILED, timeout_s=5) for i in job_ids]
    assert sorted(job.error_message or "" for job in failed) == [
        "BaseException: of its own",
        "CancelledError: ",
        "CancelledError: ",
        "GeneratorExit: ",
    ]
    later = await queue.enqueue(NewJob(type="cancels_itself", payload={}, max_attempts=2))
    job = await wait_for_status(queue, later, JobStatus.FAILED, timeout_s=5)
    assert job.attempts == 2  # ordinary failed attempts: retried with backoff


class _UnprintableError(PermanentError):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


async def test_an_error_whose_str_raises_is_recorded_as_the_handlers_own(
    queue: Queue, start_worker: StartWorker
) -> None:
    """Writing the error message called str() on the exception inside the handler's except
    clause: its RuntimeError made the attempt "internal error running the job", retried even
    though the handler raised a PermanentError."""
    registry = TaskRegistry()

    @registry.task("unprintable")
    async def unprintable(_job: JobContext) -> None:
        raise _UnprintableError

    job_id = await queue.enqueue(NewJob(type="unprintable", payload={}, max_attempts=5))
    await start_worker(registry)

    job = await wait_for_status(queue, job_id, JobStatus.FAILED, timeout_s=5)
    assert job.attempts == 1
    assert job.error_message == "_UnprintableError: <str() raised RuntimeError>"


async def test_an_outcome_the_database_refuses_costs_only_its_own_job(
    queue: Queue, pool: asyncpg.Pool, start_worker: StartWorker
) -> None:
    """Whatever makes the database refuse one outcome (a constraint added by hand here; before,
    values the worker had not checked), the statement recording the batch failed, and every
    job of the batch ran again once its lease ran out. Now each is tried on its own."""
    await pool.execute(
        "ALTER TABLE jobs ADD CONSTRAINT refuses_poison"
        " CHECK (error_message IS DISTINCT FROM 'ValueError: poison') NOT VALID"
    )
    registry = TaskRegistry()
    ran: list[int] = []
    all_started = asyncio.Event()

    @registry.task("step")
    async def step(job: JobContext) -> None:
        ran.append(job.payload["n"])
        if len(ran) == 10:
            all_started.set()
        await all_started.wait()  # all ten end at once: one batch of outcomes
        if job.payload["n"] == 0:
            raise ValueError("poison")

    ids = await queue.enqueue_many(
        [NewJob(type="step", payload={"n": n}, max_attempts=1) for n in range(10)]
    )
    await start_worker(registry, concurrency=10)

    for job_id in ids[1:]:
        await wait_for_status(queue, job_id, JobStatus.COMPLETED, timeout_s=5)
    assert sorted(ran[:10]) == list(range(10))
    assert ran[10:] == []  # no job ran again
    poisoned = await queue.get(ids[0])
    assert poisoned is not None
    assert poisoned.status is JobStatus.RUNNING  # left to its lease: delayed, not lost


async def test_an_error_message_with_a_nul_character_is_still_recorded(
    queue: Queue, start_worker: StartWorker
) -> None:
    """PostgreSQL text cannot hold U+0000, but a handler's exception may (bytes decoded from a
    file or a socket). The failure must still be recorded, not leave the job running."""
    registry = TaskRegistry()

    @registry.task("binary")
    async def binary(_job: JobContext) -> None:
        raise ValueError("unexpected byte in 'ab\x00cd'")

    job_id = await queue.enqueue(NewJob(type="binary", payload={}, max_attempts=1))
    await start_worker(registry)

    job = await wait_for_status(queue, job_id, JobStatus.FAILED, timeout_s=5)

    assert job.error_message is not None
    assert job.error_message.startswith("ValueError: unexpected byte in 'ab")


async def test_an_error_message_with_an_unpaired_surrogate_is_recorded_beside_the_others(
    queue: Queue, start_worker: StartWorker
) -> None:
    """A file name that is not UTF-8, decoded as Python decodes file names (os.listdir), holds
    unpaired surrogates, which PostgreSQL text cannot store. The failure must be recorded with the
    others finishing at the same time, not fail the statement that records them all (then
    every job of that batch would run again once its lease ran out)."""
    registry = TaskRegistry()
    ran: list[int] = []
    name = b"report-\xff.csv".decode("utf-8", "surrogateescape")

    @registry.task("read_file")
    async def read_file(job: JobContext) -> None:
        ran.append(job.payload["n"])
        if job.payload["n"] == 0:
            raise ValueError(f"no header row in {name}")

    ids = await queue.enqueue_many(
        [NewJob(type="read_file", payload={"n": n}, max_attempts=1) for n in range(20)]
    )
    await start_worker(registry)

    job = await wait_for_status(queue, ids[0], JobStatus.FAILED, timeout_s=5)
    for job_id in ids[1:]:
        await wait_for_status(queue, job_id, JobStatus.COMPLETED, timeout_s=5)

    assert job.error_message == "ValueError: no header row in report-\\udcff.csv"
    assert sorted(ran) == list(range(20))  # each job ran once


@pytest.mark.parametrize(
    ("stored", "error"),
    [
        ("[1, 2]", "payload is not a JSON object (it is a JSON array)"),
        ("null", "payload is not a JSON object (it is a JSON null)"),
        ('"text"', "payload is not a JSON object (it is a JSON string)"),
        (
            "[" * 5000 + "]" * 5000,
            "payload cannot be decoded: nested too deeply, or a number too long to read",
        ),
        # jsonb prints 1e5000 as an integer of 5,001 digits; Python reads at most 4,300.
        (
            '{"n": 1e5000}',
            "payload cannot be decoded: nested too deeply, or a number too long to read",
        ),
    ],
)
async def test_a_stored_payload_that_is_no_object_fails_without_running_the_handler(
    queue: Queue, pool: asyncpg.Pool, start_worker: StartWorker, stored: str, error: str
) -> None:
    # Only a row written around the API holds such a payload; handlers are promised an object.
    registry = TaskRegistry()
    ran: list[JobContext] = []

    @registry.task("greet")
    async def greet(job: JobContext) -> None:
        ran.append(job)

    job_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO jobs (id, type, payload) VALUES ($1, 'greet', $2::text::jsonb)", job_id, stored
    )
    [normal] = await queue.enqueue_many([NewJob(type="greet", payload={"n": 1})])
    await start_worker(registry)

    job = await wait_for_status(queue, job_id, JobStatus.FAILED)
    await wait_for_status(queue, normal, JobStatus.COMPLETED)

    assert job.attempts == 1  # final at once: retrying cannot change the payload
    assert job.error_message == error
    assert [j.id for j in ran] == [normal]


class _SlowSettling(RecordingQueue):
    """Settling held until the test lets it go, as a chain of thousands takes seconds."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.settling = asyncio.Event()
        self.let_go = asyncio.Event()

    async def settle_dependants(
        self, job_ids: Sequence[uuid.UUID], *, max_transactions: int | None = None
    ) -> None:
        self.settling.set()
        await self.let_go.wait()
        await super().settle_dependants(job_ids, max_transactions=max_transactions)


async def test_outcomes_are_recorded_while_dependants_are_being_settled(
    pool: asyncpg.Pool, start_worker: StartWorker
) -> None:
    """Settling used to run in the completer: while a long chain failing with its parent was
    settled (26 s for 12,000), every other outcome waited, their leases ran out, and the
    rescuer gave the jobs to run again."""
    registry = TaskRegistry()

    @registry.task("boom")
    async def boom(_job: JobContext) -> None:
        raise PermanentError("no")

    @registry.task("fine")
    async def fine(_job: JobContext) -> None:
        return None

    queue = _SlowSettling(pool)
    parent, child = await queue.enqueue_many(
        [
            NewJob(type="boom", payload={"n": 1}),
            NewJob(type="fine", payload={"n": 2}, depends_on=(0,)),
        ]
    )
    await start_worker(registry, queue=queue)
    await wait_for_status(queue, parent, JobStatus.FAILED)
    await asyncio.wait_for(queue.settling.wait(), timeout=10)

    later = await queue.enqueue(NewJob(type="fine", payload={"n": 3}))
    await wait_for_status(queue, later, JobStatus.COMPLETED)  # not behind the settling

    queue.let_go.set()
    dependant = await wait_for_status(queue, child, JobStatus.FAILED)
    assert dependant.error_message == f"dependency {parent} failed"
