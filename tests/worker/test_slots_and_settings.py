"""Slots cannot be held forever (a default attempt timeout, /healthz naming stuck slots), and
every setting is checked at start: a bad one stops ``queue-worker`` before any job runs."""

import asyncio
import threading

import httpx
import pytest

from helpers import eventually, run_script
from queue_core.jobs import NewJob
from queue_core.queue import Queue
from queue_core.states import JobStatus
from queue_core.tasks import JobContext, TaskRegistry
from queue_worker.http import SidePortServer
from queue_worker.settings import DEFAULT_JOB_TIMEOUT_S, WorkerSettings
from worker.harness import StartWorker, wait_for_status

STALL_AFTER_S = 60.0


async def test_a_handler_that_ignores_its_timeout_turns_healthz_503_naming_stuck_slots(
    queue: Queue, start_worker: StartWorker
) -> None:
    release = asyncio.Event()
    registry = TaskRegistry()

    @registry.task("stubborn", timeout_s=0.1)
    async def stubborn(_job: JobContext) -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                continue  # swallows its cancellation: the slot stays taken

    worker = await start_worker(registry, stuck_grace_s=0.2)
    side = SidePortServer("127.0.0.1", 0, lambda: worker.runner.health(STALL_AFTER_S))
    side.start()
    url = f"http://127.0.0.1:{side.port}/healthz"
    try:
        job_id = await queue.enqueue(NewJob(type="stubborn", payload={}))

        async def stuck() -> bool:
            response = await asyncio.to_thread(httpx.get, url, timeout=5)
            return response.status_code == 503

        await eventually(stuck)
        body = (await asyncio.to_thread(httpx.get, url, timeout=5)).json()
        assert body["stuck_slots"] == 1
        assert body["problems"] == ["stuck slots: 1"]

        release.set()
        # It returned after all (having swallowed the cancel): its slot is free again.
        await wait_for_status(queue, job_id, JobStatus.COMPLETED)
        response = await asyncio.to_thread(httpx.get, url, timeout=5)
        assert response.status_code == 200
    finally:
        release.set()
        side.stop()


async def test_a_sync_handler_that_outlives_its_timeout_keeps_its_slot_until_it_returns(
    queue: Queue, start_worker: StartWorker
) -> None:
    """A thread cannot be interrupted. Its attempt fails on time, but the thread runs on: its
    slot stays taken and /healthz names it (past the grace), so that hung handlers cannot take
    every thread while the worker claims more jobs than it can start (each then failing
    'timed out' without having run) and says it is healthy."""
    release = threading.Event()
    ran: list[str] = []
    registry = TaskRegistry()

    @registry.task("hangs", timeout_s=0.1)
    def hangs(_job: JobContext) -> None:
        ran.append("hangs")
        release.wait(30)

    @registry.task("quick")
    def quick(_job: JobContext) -> None:
        ran.append("quick")

    worker = await start_worker(registry, concurrency=2, stuck_grace_s=0.2)
    try:
        hung = await queue.enqueue_many(
            [NewJob(type="hangs", payload={}, max_attempts=1) for _ in range(2)]
        )
        for job_id in hung:
            await wait_for_status(queue, job_id, JobStatus.FAILED)
        later = await queue.enqueue(NewJob(type="quick", payload={}))

        async def both_stuck() -> bool:  # past the grace after their attempts ended
            return worker.runner.health(STALL_AFTER_S).stuck_slots == 2

        await eventually(both_stuck)
        await asyncio.sleep(0.3)  # a free slot would have claimed it within milliseconds
        job = await queue.get(later)
        assert job.status is JobStatus.PENDING  # no slot: both are held by the hung threads
        assert ran == ["hangs", "hangs"]

        release.set()  # the threads return: their slots are free, the job runs
        await wait_for_status(queue, later, JobStatus.COMPLETED)
        assert worker.runner.health(STALL_AFTER_S).stuck_slots == 0
    finally:
        release.set()


async def test_the_workers_default_timeout_ends_an_attempt_without_a_timer_of_its_own(
    queue: Queue, start_worker: StartWorker
) -> None:
    registry = TaskRegistry()

    @registry.task("forever")
    async def forever(_job: JobContext) -> None:
        await asyncio.Event().wait()

    await start_worker(registry, job_timeout_s=0.2)
    job_id = await queue.enqueue(NewJob(type="forever", payload={}, max_attempts=1))

    job = await wait_for_status(queue, job_id, JobStatus.FAILED)
    assert job.error_message == "timed out after 0.2 s"


def test_the_default_attempt_timeout_is_an_hour_and_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://localhost/x")
    monkeypatch.delenv("WORKER_JOB_TIMEOUT_S", raising=False)
    assert WorkerSettings().job_timeout_s == DEFAULT_JOB_TIMEOUT_S == 3600
    for bad in ("0", "-1", "nan", "inf", str(8 * 24 * 3600)):
        monkeypatch.setenv("WORKER_JOB_TIMEOUT_S", bad)
        with pytest.raises(ValueError, match="job_timeout_s"):
            WorkerSettings()


def test_a_bad_smtp_setting_stops_the_worker_at_start(db_url: str) -> None:
    result = run_script(
        ["queue-worker"],
        {"DATABASE_URL": db_url, "SMTP_PORT": "abc", "WORKER_METRICS_PORT": "0"},
        timeout_s=30,
    )
    assert result.returncode == 2
    assert "SMTP_PORT" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # one clear line, no traceback
    assert "worker_started" not in result.stdout  # no job could have run
