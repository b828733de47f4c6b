"""Stopping the Runner, losing the database under it, and a worker that died mid-job."""

import asyncio
from typing import TYPE_CHECKING

from helpers import TcpProxy, eventually
from queue_core.jobs import NewJob
from queue_core.queue import Queue
from queue_core.states import JobStatus
from queue_core.tasks import JobContext, PermanentError, TaskRegistry
from queue_worker.maintenance import Rescuer
from worker.harness import StartWorker, holds, wait_for_status

if TYPE_CHECKING:
    import uuid

RUN_RETURNS_WITHIN_S = 10.0


async def test_stop_lets_a_running_job_finish_and_claims_nothing_more(
    queue: Queue, start_worker: StartWorker
) -> None:
    registry = TaskRegistry()
    started = asyncio.Event()
    finished: list[uuid.UUID] = []

    @registry.task("slow")
    async def slow(job: JobContext) -> None:
        started.set()
        await asyncio.sleep(0.3)  # the work: still running when the stop is requested
        finished.append(job.id)

    job_id = await queue.enqueue(NewJob(type="slow", payload={}))
    worker = await start_worker(registry, shutdown_grace_s=10.0)
    async with asyncio.timeout(10):
        await started.wait()

    worker.runner.request_stop()
    late = await queue.enqueue(NewJob(type="slow", payload={}))
    async with asyncio.timeout(RUN_RETURNS_WITHIN_S):
        await worker.task  # run() returns once the job is drained

    assert finished == [job_id]
    job = await queue.get(job_id)
    assert (job.status, job.attempts) == (JobStatus.COMPLETED, 1)
    assert (await queue.get(late)).status is JobStatus.PENDING
    assert worker.runner.running == 0


async def test_stop_releases_a_job_that_outlives_the_grace_period(
    queue: Queue, start_worker: StartWorker
) -> None:
    registry = TaskRegistry()
    started = asyncio.Event()
    cancelled: list[uuid.UUID] = []

    @registry.task("endless")
    async def endless(job: JobContext) -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # never set: only the drain can end this
        except asyncio.CancelledError:
            cancelled.append(job.id)
            raise

    job_id = await queue.enqueue(NewJob(type="endless", payload={}))
    worker = await start_worker(registry, shutdown_grace_s=0.2)
    async with asyncio.timeout(10):
        await started.wait()

    worker.runner.request_stop()
    async with asyncio.timeout(RUN_RETURNS_WITHIN_S):
        await worker.task

    assert cancelled == [job_id]
    job = await queue.get(job_id)
    assert job.status is JobStatus.PENDING  # another worker may take it straight away
    assert job.attempts == 0  # the interrupted attempt is given back
    assert job.error_message == "interrupted by worker shutdown; released"


async def test_outcomes_finished_during_a_database_outage_are_recorded_when_it_returns(
    queue: Queue, start_worker: StartWorker, db_proxy: tuple[TcpProxy, str]
) -> None:
    proxy, proxied_url = db_proxy
    registry = TaskRegistry()
    release = asyncio.Event()
    runs: list[str] = []

    @registry.task("ok")
    async def ok(_job: JobContext) -> None:
        runs.append("ok")
        await release.wait()

    @registry.task("rejected")
    async def rejected(_job: JobContext) -> None:
        runs.append("rejected")
        await release.wait()
        raise PermanentError("the mail server said no")

    ok_id = await queue.enqueue(NewJob(type="ok", payload={}))
    rejected_id = await queue.enqueue(NewJob(type="rejected", payload={}))
    # The worker reaches the database only through the proxy; the test's `queue` does not.
    worker = await start_worker(registry, concurrency=2, database_url=proxied_url)
    await eventually(holds(lambda: sorted(runs) == ["ok", "rejected"]))

    proxy.down()
    release.set()  # both jobs end while the database is unreachable
    await eventually(holds(lambda: worker.queue.record_unavailable >= 2))
    assert (await queue.get(ok_id)).status is JobStatus.RUNNING
    assert (await queue.get(rejected_id)).status is JobStatus.RUNNING

    proxy.up()
    done = await wait_for_status(queue, ok_id, JobStatus.COMPLETED, timeout_s=15)
    failed = await wait_for_status(queue, rejected_id, JobStatus.FAILED, timeout_s=15)

    assert done.attempts == 1
    assert failed.attempts == 1
    assert failed.error_message == "PermanentError: the mail server said no"
    assert sorted(runs) == ["ok", "rejected"]  # recorded, not run again


async def test_a_job_whose_worker_died_runs_again_after_the_rescue(
    queue: Queue, start_worker: StartWorker
) -> None:
    registry = TaskRegistry()
    attempts: list[int] = []

    @registry.task("work")
    async def work(job: JobContext) -> None:
        attempts.append(job.attempt)

    job_id = await queue.enqueue(NewJob(type="work", payload={}))
    # A worker claims the job with a short lease and dies: no heartbeat, no outcome.
    [claimed] = await queue.claim(worker_id="lost", queues=["default"], limit=1, lease_s=0.2)
    assert claimed.id == job_id
    await start_worker(registry)

    rescuer = Rescuer(queue, interval_s=60.0)

    async def rescued() -> bool:
        return await rescuer.rescue_once() == 1

    await eventually(rescued)
    job = await wait_for_status(queue, job_id, JobStatus.COMPLETED)

    assert attempts == [2]  # the lost attempt counted
    assert job.attempts == 2
