"""When the Runner starts jobs: never past its concurrency, never before scheduled_at, and at
once on a NOTIFY rather than at the next poll."""

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from helpers import eventually
from queue_core.jobs import NewJob
from queue_core.queue import Queue
from queue_core.states import JobStatus
from queue_core.tasks import JobContext, TaskRegistry
from worker.harness import LoopWatchdog, StartWorker, holds, wait_for_status

if TYPE_CHECKING:
    import uuid

# Far longer than any wait below: a job that starts in time was woken, not polled for.
SLOW_POLL_S = 30.0


def _quick_registry() -> tuple[TaskRegistry, list[int]]:
    """A "quick" handler that returns at once, and the payload["i"] of each job it started."""
    registry = TaskRegistry()
    started: list[int] = []

    @registry.task("quick")
    async def quick(job: JobContext) -> None:
        started.append(job.payload["i"])

    return registry, started


async def test_the_next_jobs_start_while_outcomes_are_written_but_not_endlessly(
    queue: Queue, start_worker: StartWorker
) -> None:
    # A slot is a running handler: a job whose handler returned frees it before its outcome
    # is written, so claiming overlaps the write. Outcomes not written yet are bounded by one
    # concurrency's worth, so a write that hangs stops the claiming instead of piling up work.
    registry, started = _quick_registry()
    worker = await start_worker(registry, concurrency=2)
    worker.queue.outcomes_held.clear()
    ids = [await queue.enqueue(NewJob(type="quick", payload={"i": i})) for i in range(6)]

    await eventually(holds(lambda: len(started) == 4))
    await asyncio.sleep(0.5)  # ten polls: nothing more may start while four outcomes wait
    assert len(started) == 4
    worker.queue.outcomes_held.set()
    for job_id in ids:
        await wait_for_status(queue, job_id, JobStatus.COMPLETED)
    assert sorted(started) == list(range(6))


async def test_claiming_resumes_as_soon_as_held_outcomes_are_written(
    queue: Queue, start_worker: StartWorker
) -> None:
    # Outcomes waiting to be written hold the claiming back; writing them must wake the claim
    # loop at once, not leave the backlog to the next poll (30 s away here).
    registry, started = _quick_registry()
    worker = await start_worker(registry, concurrency=2, poll_interval_s=SLOW_POLL_S, listen=True)
    worker.queue.outcomes_held.clear()
    ids = await queue.enqueue_many([NewJob(type="quick", payload={"i": i}) for i in range(6)])
    await eventually(holds(lambda: len(started) == 4))  # woken by the NOTIFY, then held
    worker.queue.outcomes_held.set()

    for job_id in ids:
        await wait_for_status(queue, job_id, JobStatus.COMPLETED, timeout_s=5.0)
    assert sorted(started) == list(range(6))


async def test_never_more_jobs_run_than_the_concurrency(
    queue: Queue, start_worker: StartWorker
) -> None:
    concurrency = 3
    registry = TaskRegistry()
    running = 0
    peak = 0

    @registry.task("work")
    async def work(_job: JobContext) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await asyncio.sleep(0.1)  # the work itself; slots stay busy meanwhile
        finally:
            running -= 1

    ids = await queue.enqueue_many(
        [NewJob(type="work", payload={}) for _ in range(3 * concurrency)]
    )
    await start_worker(registry, concurrency=concurrency)

    for job_id in ids:
        await wait_for_status(queue, job_id, JobStatus.COMPLETED)
    assert peak == concurrency


async def test_a_scheduled_job_does_not_start_before_its_time(
    queue: Queue, start_worker: StartWorker
) -> None:
    registry = TaskRegistry()
    started_at: list[datetime] = []

    @registry.task("later")
    async def later(_job: JobContext) -> None:
        started_at.append(datetime.now(UTC))

    due = datetime.now(UTC) + timedelta(seconds=1)
    job_id = await queue.enqueue(NewJob(type="later", payload={}, scheduled_at=due))
    await start_worker(registry, poll_interval_s=0.05)

    job = await wait_for_status(queue, job_id, JobStatus.COMPLETED)

    assert job.started_at is not None
    assert job.started_at >= due  # the database's clock decided
    assert started_at[0] >= due  # and the handler ran no earlier, by ours
    assert job.attempts == 1


async def test_a_notify_wakes_the_worker_long_before_its_next_poll(
    queue: Queue, start_worker: StartWorker
) -> None:
    registry = TaskRegistry()
    started = asyncio.Event()

    @registry.task("urgent")
    async def urgent(_job: JobContext) -> None:
        started.set()

    worker = await start_worker(registry, poll_interval_s=SLOW_POLL_S, listen=True)
    # The first claim found nothing: from here only a NOTIFY or the 30 s poll wakes the runner.
    await eventually(holds(lambda: worker.queue.claims >= 1))

    enqueued = time.monotonic()
    job_id = await queue.enqueue(NewJob(type="urgent", payload={}))
    async with asyncio.timeout(10):
        await started.wait()

    assert time.monotonic() - enqueued < 5.0
    await wait_for_status(queue, job_id, JobStatus.COMPLETED)
    assert worker.notifications >= 2  # the one on connecting, and the enqueue's


async def test_a_notify_for_another_queue_does_not_wake_the_worker(
    queue: Queue, start_worker: StartWorker
) -> None:
    worker = await start_worker(TaskRegistry(), poll_interval_s=SLOW_POLL_S, listen=True)
    await eventually(holds(lambda: worker.queue.claims >= 1))
    before = worker.notifications

    other = await queue.enqueue(NewJob(type="noop", payload={}, queue="elsewhere"))
    # A marker on our own queue: NOTIFYs arrive in commit order, so once its wake-up is seen,
    # the other queue's NOTIFY has been delivered (and must have been ignored).
    await queue.enqueue(NewJob(type="noop", payload={}, queue="default", max_attempts=1))

    await eventually(holds(lambda: worker.notifications > before))
    assert worker.notifications == before + 1
    assert (await queue.get(other)).status is JobStatus.PENDING


async def test_a_wake_up_while_every_slot_is_busy_does_not_stall_the_event_loop(
    queue: Queue, start_worker: StartWorker, watchdog: LoopWatchdog
) -> None:
    """A NOTIFY that arrives while all slots are busy sets the runner's wake event. The claim
    loop must then wait for a free slot, not spin: ``Event.wait()`` on a set event returns
    without yielding, so a loop that neither claims nor clears it never lets anything else run:
    not the jobs, not the heartbeats, not a SIGTERM handler."""
    registry = TaskRegistry()
    release = asyncio.Event()
    started: list[uuid.UUID] = []

    @registry.task("hold")
    async def hold(job: JobContext) -> None:
        started.append(job.id)
        await release.wait()

    first = await queue.enqueue(NewJob(type="hold", payload={}))
    worker = await start_worker(registry, concurrency=1, listen=True, shutdown_grace_s=1.0)
    await eventually(holds(lambda: started == [first]))
    notified = worker.notifications

    second = await queue.enqueue(NewJob(type="hold", payload={}))  # NOTIFY, with no free slot
    await eventually(holds(lambda: worker.notifications > notified))
    release.set()
    await wait_for_status(queue, first, JobStatus.COMPLETED)

    assert not watchdog.consume(), (
        "the event loop stopped turning after a wake-up with every slot busy "
        "(Runner._claim_loop spins: free == 0 and _wake stays set)"
    )
    await wait_for_status(queue, second, JobStatus.COMPLETED)
