"""Paused queues, in-process: the Runner claims only from its queues that are not paused, as
its ``pauses`` service last read them from the ``queues`` table, and fails safe when that read
fails. (tests/e2e/test_e2e_fleet.py pauses real workers over HTTP.)"""

import asyncio
import uuid
from collections.abc import Sequence

import asyncpg

from helpers import eventually
from queue_core.errors import DatabaseUnavailableError
from queue_core.fleet import Fleet
from queue_core.jobs import NewJob
from queue_core.queue import Queue
from queue_core.states import JobStatus
from queue_core.tasks import JobContext, TaskRegistry
from queue_worker.pauses import PauseWatcher
from worker.harness import StartWorker, holds, wait_for_status

REFRESH_S = 0.05
# Long enough next to the refresh interval and the claim poll (50 ms each) that a claim that
# was going to happen has happened.
QUIET_S = 0.5


def _registry() -> TaskRegistry:
    registry = TaskRegistry()

    @registry.task("noop")
    async def noop(_job: JobContext) -> None:
        pass

    return registry


async def _statuses(queue: Queue, ids: Sequence[uuid.UUID]) -> list[JobStatus]:
    return [(await queue.get(job_id)).status for job_id in ids]


async def test_a_paused_queue_is_not_claimed_until_resumed_and_others_run_meanwhile(
    queue: Queue, pool: asyncpg.Pool, start_worker: StartWorker
) -> None:
    fleet = Fleet(pool)
    await fleet.set_paused("held", paused=True)
    pauses = PauseWatcher(fleet, ("held", "open"), interval_s=REFRESH_S)
    await start_worker(_registry(), queues=("held", "open"), pauses=pauses)

    held = await queue.enqueue(NewJob(type="noop", payload={"a": 1}, queue="held"))
    free = await queue.enqueue(NewJob(type="noop", payload={"a": 1}, queue="open"))
    await wait_for_status(queue, free, JobStatus.COMPLETED)
    await asyncio.sleep(QUIET_S)  # a window in which a claim of "held" would have happened
    assert (await queue.get(held)).status is JobStatus.PENDING
    assert pauses.claimable == ("open",)

    state = await fleet.set_paused("held", paused=False)

    assert not state.paused
    await wait_for_status(queue, held, JobStatus.COMPLETED, timeout_s=2)


async def test_pausing_stops_claims_within_the_refresh_and_running_jobs_finish(
    queue: Queue, pool: asyncpg.Pool, start_worker: StartWorker
) -> None:
    fleet = Fleet(pool)
    registry = TaskRegistry()
    release = asyncio.Event()

    @registry.task("gate")
    async def gate(_job: JobContext) -> None:
        await release.wait()

    pauses = PauseWatcher(fleet, ("default",), interval_s=REFRESH_S)
    await start_worker(registry, concurrency=1, pauses=pauses)
    running = await queue.enqueue(NewJob(type="gate", payload={"a": 1}))
    await wait_for_status(queue, running, JobStatus.RUNNING)

    await fleet.set_paused("default", paused=True)
    await eventually(holds(lambda: pauses.claimable == ()), timeout_s=1)
    waiting = await queue.enqueue(NewJob(type="gate", payload={"a": 2}))
    release.set()

    await wait_for_status(queue, running, JobStatus.COMPLETED)
    await asyncio.sleep(QUIET_S)
    assert (await queue.get(waiting)).status is JobStatus.PENDING


class FlakyFleet(Fleet):
    """The real fleet, whose reads of the paused queues fail while ``down`` is set."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.down = False
        self.failed_reads = 0

    async def paused_queues(self, queues: Sequence[str]) -> frozenset[str]:
        if self.down:
            self.failed_reads += 1
            raise DatabaseUnavailableError(ConnectionResetError("injected"))
        return await super().paused_queues(queues)


async def test_a_failing_read_keeps_the_last_known_pauses(
    queue: Queue, pool: asyncpg.Pool, start_worker: StartWorker
) -> None:
    fleet = FlakyFleet(pool)
    await fleet.set_paused("default", paused=True)
    pauses = PauseWatcher(fleet, ("default",), interval_s=REFRESH_S)
    worker = await start_worker(_registry(), pauses=pauses)
    await eventually(holds(lambda: pauses.claimable == ()))

    fleet.down = True
    await Fleet(pool).set_paused("default", paused=False)  # unseen while reads fail
    job_id = await queue.enqueue(NewJob(type="noop", payload={"a": 1}))
    await eventually(holds(lambda: fleet.failed_reads >= 2))

    assert (await queue.get(job_id)).status is JobStatus.PENDING
    assert worker.runner.supervisor.failing() == []  # transient: retried, not a crash
    fleet.down = False
    await wait_for_status(queue, job_id, JobStatus.COMPLETED, timeout_s=5)


async def test_a_worker_claims_nothing_before_it_has_read_the_pauses(
    queue: Queue, pool: asyncpg.Pool, start_worker: StartWorker
) -> None:
    fleet = FlakyFleet(pool)
    fleet.down = True
    pauses = PauseWatcher(fleet, ("default",), interval_s=REFRESH_S)
    job_id = await queue.enqueue(NewJob(type="noop", payload={"a": 1}))
    await start_worker(_registry(), pauses=pauses)

    await eventually(holds(lambda: fleet.failed_reads >= 2))
    await asyncio.sleep(QUIET_S)
    assert (await queue.get(job_id)).status is JobStatus.PENDING
    assert pauses.claimable is None

    fleet.down = False
    await wait_for_status(queue, job_id, JobStatus.COMPLETED, timeout_s=5)
