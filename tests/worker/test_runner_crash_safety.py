"""What keeps a running job safe: heartbeats that extend its lease, cancel requests and
timeouts that stop its handler, a lease taken back by a rescuer, and a listener that
re-subscribes after losing its connection.

Shutdown after the grace period (release to pending, attempt given back) is covered by
test_runner_lifecycle.py.
"""

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from helpers import TcpProxy, eventually
from queue_core.jobs import NewJob, Rescued, Transition
from queue_core.queue import Queue
from queue_core.states import JobStatus
from queue_core.tasks import JobContext, TaskRegistry
from queue_worker.events import NoEvents
from queue_worker.maintenance import Rescuer
from worker.harness import RunningWorker, StartWorker, holds, wait_for_status

# Far shorter than the defaults, so that a test sees several leases run out in a second.
LEASE_S = 0.5
HEARTBEAT_S = 0.1
# The heartbeat test: twenty beats a lease, and how long past its first lease the job runs.
LONG_LEASE_S = 2.0
OUTLIVED_BY_S = 0.5
# A cancel request or a lost lease is acted on at the next heartbeat: this is many of them.
STOPPED_WITHIN_S = 3.0
# Far longer than any wait below: a job that starts in time was woken, not polled for.
SLOW_POLL_S = 30.0
RESCUE_MESSAGE = "rescued from a lost worker"


class RescueLog(NoEvents):
    """Every job a Rescuer took back."""

    def __init__(self) -> None:
        self.rescued: list[Rescued] = []

    def jobs_rescued(self, rescued: Sequence[Rescued]) -> None:
        self.rescued.extend(rescued)


class Blocker:
    """A handler that runs until released, remembering which attempts started, which were
    cancelled (stopped by the runner) and which returned. Each attempt waits on a gate of its
    own, so a test can let one attempt end and hold another."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.cancelled: list[int] = []
        self.finished: list[int] = []
        self._gates: dict[int, asyncio.Event] = {}
        self._released = False

    def gate(self, attempt: int) -> asyncio.Event:
        return self._gates.setdefault(attempt, asyncio.Event())

    def release(self) -> None:
        """Let every attempt, running or future, return."""
        self._released = True
        for gate in self._gates.values():
            gate.set()

    async def __call__(self, job: JobContext) -> None:
        self.started.append(job.attempt)
        gate = self.gate(job.attempt)
        if self._released:
            gate.set()
        try:
            await gate.wait()
        except asyncio.CancelledError:
            self.cancelled.append(job.attempt)
            raise
        self.finished.append(job.attempt)


async def _lease_expires_at(pool: asyncpg.Pool, job_id: uuid.UUID) -> datetime | None:
    expires_at: datetime | None = await pool.fetchval(
        "SELECT lease_expires_at FROM jobs WHERE id = $1", job_id
    )
    return expires_at


async def _row(pool: asyncpg.Pool, job_id: uuid.UUID) -> dict[str, object]:
    row = await pool.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
    assert row is not None
    return dict(row)


async def _expire(pool: asyncpg.Pool, job_id: uuid.UUID) -> None:
    """Play a worker whose heartbeats stopped reaching the database a while ago."""
    await pool.execute(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 minute' WHERE id = $1", job_id
    )


async def _expire_and_rescue(queue: Queue, pool: asyncpg.Pool, job_id: uuid.UUID) -> list[Rescued]:
    """Make the job's lease run out and rescue it, again if a heartbeat renewed the lease in
    between: a loaded machine can hold the test past the next beat."""
    rescued: list[Rescued] = []

    async def done() -> bool:
        nonlocal rescued
        await _expire(pool, job_id)
        rescued = await queue.rescue_expired()
        return bool(rescued)

    await eventually(done)
    return rescued


async def _after_a_heartbeat(worker: RunningWorker) -> None:
    """Return just after the runner's heartbeat: the next one is at least 0.75 heartbeat_s
    away, which leaves the test that long to change a lease without racing it."""
    seen = worker.queue.heartbeats
    await eventually(holds(lambda: worker.queue.heartbeats > seen), interval_s=0.001)


# -- heartbeats -------------------------------------------------------------------------------


async def test_heartbeats_keep_a_job_leased_while_it_outlives_its_lease(
    queue: Queue, pool: asyncpg.Pool, start_worker: StartWorker
) -> None:
    registry = TaskRegistry()
    long = Blocker()
    registry.register("long", long)
    job_id = await queue.enqueue(NewJob(type="long", payload={}))
    rescues = RescueLog()
    # Another replica's rescuer, looking for expired leases many times a lease.
    rescuer = asyncio.create_task(Rescuer(queue, interval_s=0.05, events=rescues).run())
    try:
        # Twenty beats a lease, as a loaded machine needs: one beat late by a lease would be
        # rescued rightly, which is not what this test is about.
        worker = await start_worker(registry, lease_s=LONG_LEASE_S, heartbeat_s=HEARTBEAT_S)
        await eventually(holds(lambda: long.started == [1]))
        first = await _lease_expires_at(pool, job_id)
        assert first is not None
        seen = {first}

        async def past_the_first_lease() -> bool:
            row = await pool.fetchrow(
                "SELECT status, lease_owner, lease_expires_at, now() AS db_now "
                "FROM jobs WHERE id = $1",
                job_id,
            )
            assert row is not None
            assert (row["status"], row["lease_owner"]) == ("running", worker.runner.worker_id)
            assert row["lease_expires_at"] > row["db_now"], "the lease ran out while running"
            seen.add(row["lease_expires_at"])
            past_s = (row["db_now"] - first).total_seconds()
            return past_s > OUTLIVED_BY_S and len(seen) >= 3

        # The first lease ran out a while ago; the heartbeats kept pushing the expiry forward.
        await eventually(past_the_first_lease, timeout_s=10)
        assert max(seen) > first

        long.release()
        job = await wait_for_status(queue, job_id, JobStatus.COMPLETED)
    finally:
        rescuer.cancel()
        await asyncio.gather(rescuer, return_exceptions=True)

    assert (job.attempts, job.error_message) == (1, None)
    assert long.started == long.finished == [1]
    assert rescues.rescued == []


# -- cancel -----------------------------------------------------------------------------------


async def test_cancel_of_a_running_job_stops_its_handler_at_the_next_heartbeat(
    queue: Queue, start_worker: StartWorker
) -> None:
    registry = TaskRegistry()
    doomed, bystander = Blocker(), Blocker()
    registry.register("doomed", doomed)
    registry.register("bystander", bystander)
    doomed_id = await queue.enqueue(NewJob(type="doomed", payload={}, max_attempts=5))
    bystander_id = await queue.enqueue(NewJob(type="bystander", payload={}))
    worker = await start_worker(registry, concurrency=2, lease_s=LEASE_S, heartbeat_s=HEARTBEAT_S)
    await eventually(holds(lambda: doomed.started == bystander.started == [1]))

    assert await queue.cancel(doomed_id) == Transition(JobStatus.RUNNING, JobStatus.RUNNING)

    # Only the heartbeat can end the doomed handler: it waits for a release that never comes.
    job = await wait_for_status(queue, doomed_id, JobStatus.CANCELLED, timeout_s=STOPPED_WITHIN_S)
    assert doomed.cancelled == [1]
    assert doomed.finished == []
    assert job.attempts == 1  # not retried, though attempts remain
    assert job.error_message == "cancelled on request"
    assert job.finished_at is not None

    # The worker carries on: the other running job was left alone, and new work is taken.
    assert bystander.cancelled == []
    assert (await queue.get(bystander_id)).status is JobStatus.RUNNING
    bystander.release()
    await wait_for_status(queue, bystander_id, JobStatus.COMPLETED)

    @registry.task("after")
    async def after(_job: JobContext) -> None:
        pass

    after_id = await queue.enqueue(NewJob(type="after", payload={}))
    await wait_for_status(queue, after_id, JobStatus.COMPLETED)
    assert not worker.task.done()


# -- timeouts ---------------------------------------------------------------------------------


async def test_a_job_timeout_cancels_a_slow_handler_and_the_attempt_is_retried(
    queue: Queue, start_worker: StartWorker
) -> None:
    registry = TaskRegistry()
    slow = Blocker()
    registry.register("slow", slow)
    job_id = await queue.enqueue(NewJob(type="slow", payload={}, max_attempts=2, timeout_s=0.2))
    await start_worker(registry)

    job = await wait_for_status(queue, job_id, JobStatus.FAILED)

    assert job.attempts == 2
    assert job.error_message == "timed out after 0.2 s"
    assert slow.started == slow.cancelled == [1, 2]


async def test_the_handlers_timeout_applies_when_the_job_has_none(
    queue: Queue, start_worker: StartWorker
) -> None:
    registry = TaskRegistry()
    slow = Blocker()
    registry.register("slow", slow, timeout_s=0.2)
    job_id = await queue.enqueue(NewJob(type="slow", payload={}, max_attempts=1))
    await start_worker(registry, job_timeout_s=60.0)

    job = await wait_for_status(queue, job_id, JobStatus.FAILED)

    assert job.error_message == "timed out after 0.2 s"
    assert slow.cancelled == [1]


async def test_the_jobs_timeout_overrides_the_handlers_either_way(
    queue: Queue, start_worker: StartWorker
) -> None:
    registry = TaskRegistry()
    registry.register("short_handler", Blocker(), timeout_s=0.2)
    registry.register("long_handler", Blocker(), timeout_s=60.0)
    longer = await queue.enqueue(
        NewJob(type="short_handler", payload={}, max_attempts=1, timeout_s=0.4)
    )
    shorter = await queue.enqueue(
        NewJob(type="long_handler", payload={}, max_attempts=1, timeout_s=0.2)
    )
    await start_worker(registry, concurrency=2)

    longer_job = await wait_for_status(queue, longer, JobStatus.FAILED)
    shorter_job = await wait_for_status(queue, shorter, JobStatus.FAILED)

    assert longer_job.error_message == "timed out after 0.4 s"
    assert shorter_job.error_message == "timed out after 0.2 s"


async def test_the_workers_default_timeout_applies_last(
    queue: Queue, start_worker: StartWorker
) -> None:
    registry = TaskRegistry()
    registry.register("plain", Blocker())
    registry.register("own_timeout", Blocker(), timeout_s=0.3)
    plain = await queue.enqueue(NewJob(type="plain", payload={}, max_attempts=1))
    own = await queue.enqueue(NewJob(type="own_timeout", payload={}, max_attempts=1))
    await start_worker(registry, concurrency=2, job_timeout_s=0.2)

    plain_job = await wait_for_status(queue, plain, JobStatus.FAILED)
    own_job = await wait_for_status(queue, own, JobStatus.FAILED)

    assert plain_job.error_message == "timed out after 0.2 s"
    assert own_job.error_message == "timed out after 0.3 s"


async def test_a_handlers_own_timeout_error_is_an_ordinary_failure(
    queue: Queue, start_worker: StartWorker
) -> None:
    registry = TaskRegistry()
    attempts: list[int] = []

    @registry.task("upstream", timeout_s=60.0)
    async def upstream(job: JobContext) -> None:
        attempts.append(job.attempt)
        raise TimeoutError(f"upstream took too long on attempt {job.attempt}")

    @registry.task("inner_deadline", timeout_s=60.0)
    async def inner_deadline(_job: JobContext) -> None:
        async with asyncio.timeout(0.01):  # the handler's own deadline, not the worker's
            await asyncio.Event().wait()

    upstream_id = await queue.enqueue(NewJob(type="upstream", payload={}, max_attempts=2))
    inner_id = await queue.enqueue(NewJob(type="inner_deadline", payload={}, max_attempts=1))
    await start_worker(registry, concurrency=2)

    upstream_job = await wait_for_status(queue, upstream_id, JobStatus.FAILED)
    inner_job = await wait_for_status(queue, inner_id, JobStatus.FAILED)

    assert attempts == [1, 2]  # retried like any failure
    assert upstream_job.error_message == "TimeoutError: upstream took too long on attempt 2"
    assert inner_job.error_message == "TimeoutError: "
    assert inner_job.attempts == 1


# -- a lease taken back -----------------------------------------------------------------------


async def test_a_job_rescued_from_under_its_handler_is_stopped_and_left_as_rescued(
    queue: Queue, pool: asyncpg.Pool, start_worker: StartWorker
) -> None:
    registry = TaskRegistry()
    work = Blocker()
    registry.register("work", work)
    # One attempt only: the rescuer fails the job, so no worker can take it again.
    job_id = await queue.enqueue(NewJob(type="work", payload={}, max_attempts=1))
    worker = await start_worker(registry, lease_s=LEASE_S, heartbeat_s=HEARTBEAT_S)
    await eventually(holds(lambda: work.started == [1]))
    rescuer = Rescuer(queue, interval_s=60.0)

    async def rescued() -> bool:
        # Another replica saw the lease run out (a heartbeat may renew it in between: again).
        await _expire(pool, job_id)
        return await rescuer.rescue_once() == 1

    await eventually(rescued)
    as_rescued = await _row(pool, job_id)
    assert as_rescued["status"] == JobStatus.FAILED
    assert RESCUE_MESSAGE in str(as_rescued["error_message"])

    await eventually(holds(lambda: work.cancelled == [1]), timeout_s=STOPPED_WITHIN_S)
    await eventually(holds(lambda: worker.runner.running == 0))  # its attempt is over
    assert await _row(pool, job_id) == as_rescued  # no outcome was written over the rescue
    assert work.finished == []
    assert not worker.task.done()


async def test_a_job_rescued_and_claimed_by_another_worker_is_stopped_here(
    queue: Queue, pool: asyncpg.Pool, start_worker: StartWorker
) -> None:
    registry = TaskRegistry()
    work = Blocker()
    registry.register("work", work)
    job_id = await queue.enqueue(NewJob(type="work", payload={}))
    # One slot, so this runner cannot take the rescued job back itself while its handler runs;
    # heartbeats slow enough for the test to rescue and re-claim between two of them.
    worker = await start_worker(registry, concurrency=1, lease_s=5.0, heartbeat_s=0.5)
    await eventually(holds(lambda: work.started == [1]))

    await _after_a_heartbeat(worker)
    rescued = await _expire_and_rescue(queue, pool, job_id)
    assert [r.lost_worker for r in rescued] == [worker.runner.worker_id]
    [claimed] = await queue.claim(worker_id="w-other", queues=["default"], limit=1, lease_s=30)
    assert (claimed.id, claimed.attempt) == (job_id, 2)
    taken = await _row(pool, job_id)

    await eventually(holds(lambda: work.cancelled == [1]), timeout_s=STOPPED_WITHIN_S)
    await eventually(holds(lambda: worker.runner.running == 0))
    assert await _row(pool, job_id) == taken  # the new owner's run is untouched
    assert await queue.complete(worker_id="w-other", job_ids=[job_id]) == {job_id}
    assert work.started == [1]


async def _reclaimed_by_the_same_worker(
    queue: Queue, pool: asyncpg.Pool, start_worker: StartWorker, work: Blocker
) -> tuple[RunningWorker, uuid.UUID]:
    """Attempt 1 runs; the rescuer takes the job back between two heartbeats; this same
    worker, polling every 50 ms with a free slot, claims it again: attempt 2 runs too."""
    registry = TaskRegistry()
    registry.register("work", work)
    job_id = await queue.enqueue(NewJob(type="work", payload={}, max_attempts=3))
    worker = await start_worker(
        registry, concurrency=2, lease_s=5.0, heartbeat_s=0.5, shutdown_grace_s=0.5
    )
    await eventually(holds(lambda: work.started == [1]))
    await _after_a_heartbeat(worker)
    assert [r.job_id for r in await _expire_and_rescue(queue, pool, job_id)] == [job_id]
    await eventually(holds(lambda: work.started == [1, 2]), timeout_s=STOPPED_WITHIN_S)
    return worker, job_id


async def test_an_attempt_superseded_by_this_workers_own_reclaim_is_stopped(
    queue: Queue, pool: asyncpg.Pool, start_worker: StartWorker
) -> None:
    """The rescuer took the job back while its handler ran (say this worker lost the database
    for longer than a lease), and this same worker claimed it again before its next heartbeat.
    Attempt 1's lease is gone, so its handler must stop, exactly as when another worker claims
    the job. (The runner tracks handlers by job id and the lease guard checks only the worker
    id, so the two attempts look alike to both.)"""
    work = Blocker()
    try:
        worker, job_id = await _reclaimed_by_the_same_worker(queue, pool, start_worker, work)

        await eventually(holds(lambda: work.cancelled == [1]), timeout_s=STOPPED_WITHIN_S)

        assert (await queue.get(job_id)).status is JobStatus.RUNNING
        work.release()
        job = await wait_for_status(queue, job_id, JobStatus.COMPLETED)
        assert job.attempts == 2
        assert work.finished == [2]
        assert not worker.task.done()
    finally:
        work.release()  # a failed assertion must not leave handlers for the drain to wait on


async def test_a_superseded_attempts_outcome_is_not_recorded_over_the_new_attempt(
    queue: Queue, pool: asyncpg.Pool, start_worker: StartWorker
) -> None:
    """Attempt 1 returns before any heartbeat could stop it. Its outcome belongs to a lease
    the rescuer took back: the job is attempt 2's now, still running and still leased (and
    heartbeated) for it."""
    work = Blocker()
    try:
        worker, job_id = await _reclaimed_by_the_same_worker(queue, pool, start_worker, work)

        work.gate(1).set()
        await eventually(holds(lambda: worker.runner.running == 1))  # attempt 1 is over

        job = await queue.get(job_id)
        assert (job.status, job.attempts) == (JobStatus.RUNNING, 2), (
            f"attempt 1's outcome was recorded while attempt 2 still runs: {job.status}"
        )
        renewed_from = await _lease_expires_at(pool, job_id)

        async def attempt_2_heartbeated() -> bool:
            return await _lease_expires_at(pool, job_id) != renewed_from

        await eventually(attempt_2_heartbeated, timeout_s=STOPPED_WITHIN_S)
        work.release()
        await wait_for_status(queue, job_id, JobStatus.COMPLETED)
    finally:
        work.release()


# -- the listener -----------------------------------------------------------------------------


async def test_the_listener_subscribes_again_after_losing_its_connection(
    db_proxy: tuple[TcpProxy, str], queue: Queue, start_worker: StartWorker
) -> None:
    proxy, proxied_url = db_proxy
    registry = TaskRegistry()
    started = asyncio.Event()

    @registry.task("urgent")
    async def urgent(_job: JobContext) -> None:
        started.set()

    # The runner claims on the test's own pool; only the listener goes through the proxy.
    worker = await start_worker(registry, poll_interval_s=SLOW_POLL_S)
    worker.start_listening(proxied_url, ("default",))
    listener = worker.listener
    assert listener is not None
    await eventually(holds(lambda: listener.connected))

    proxy.down()
    await eventually(holds(lambda: not listener.connected))
    proxy.up()
    await eventually(holds(lambda: listener.connected))
    # The reconnect's own wake-up has been passed on by now (it happens as `connected` is set),
    # so the next one can only be the enqueue's NOTIFY.
    before = worker.notifications

    enqueued = time.monotonic()
    job_id = await queue.enqueue(NewJob(type="urgent", payload={}))
    await eventually(holds(lambda: worker.notifications > before), timeout_s=5)
    async with asyncio.timeout(10):
        await started.wait()

    assert time.monotonic() - enqueued < 5.0  # far sooner than the 30 s poll
    await wait_for_status(queue, job_id, JobStatus.COMPLETED)
    await worker.stop_listening()  # close the proxied connection before the proxy goes
