"""The worker's loops run as supervised services (queue_worker.supervisor): an unexpected error
is logged once, counted and followed by a restart; a transient one backs off; a service that
keeps failing turns /healthz to 503; one job's bad data ends as a failed attempt, never as a
dead loop. Real database, real Runner; the faults are injected by wrapping the real Queue."""

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence

import asyncpg
import httpx
import pytest
import structlog
from structlog.testing import capture_logs

from helpers import eventually
from queue_core.errors import DatabaseConflictError
from queue_core.jobs import ClaimedJob, Lease, NewJob, Outcome, Recorded
from queue_core.queue import Queue
from queue_core.states import JobStatus
from queue_core.tasks import JobContext, TaskRegistry
from queue_worker.events import NoEvents
from queue_worker.http import SidePortServer
from queue_worker.maintenance import Rescuer
from queue_worker.supervisor import LoopService, Supervisor
from worker.harness import RecordingQueue, StartWorker, holds, wait_for_status

STALL_AFTER_S = 60.0


class FaultyQueue(RecordingQueue):
    """The real queue, raising the given errors from its next calls of one kind."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.claim_faults: list[Exception] = []
        self.heartbeat_faults: list[Exception] = []
        self.finish_faults: list[Exception] = []
        self.always_fail_claim: Exception | None = None

    async def claim(
        self, *, worker_id: str, queues: Sequence[str], limit: int, lease_s: float
    ) -> list[ClaimedJob]:
        if self.always_fail_claim is not None:
            raise self.always_fail_claim
        if self.claim_faults:
            raise self.claim_faults.pop(0)
        return await super().claim(worker_id=worker_id, queues=queues, limit=limit, lease_s=lease_s)

    async def heartbeat(
        self, *, worker_id: str, attempts: Sequence[tuple[uuid.UUID, int]], lease_s: float
    ) -> list[Lease]:
        if self.heartbeat_faults:
            self.heartbeats += 1
            raise self.heartbeat_faults.pop(0)
        return await super().heartbeat(worker_id=worker_id, attempts=attempts, lease_s=lease_s)

    async def finish(
        self, *, worker_id: str, outcomes: Sequence[Outcome], settle_now: bool = True
    ) -> list[Recorded]:
        if self.finish_faults:
            raise self.finish_faults.pop(0)
        return await super().finish(worker_id=worker_id, outcomes=outcomes, settle_now=settle_now)


class ServiceLog(NoEvents):
    """What the supervisor reported, by (service, kind) and restarts by service."""

    def __init__(self) -> None:
        self.errors: Counter[tuple[str, str]] = Counter()
        self.restarts: Counter[str] = Counter()

    def service_failed(self, service: str, kind: str) -> None:
        self.errors[service, kind] += 1

    def service_restarted(self, service: str) -> None:
        self.restarts[service] += 1


def _conflict() -> DatabaseConflictError:
    return DatabaseConflictError(asyncpg.DeadlockDetectedError("deadlock detected"))


@pytest.fixture(name="logs")
def fx_logs() -> Iterator[list[structlog.typing.EventDict]]:
    with capture_logs() as captured:
        yield captured


def _events(logs: list[structlog.typing.EventDict], name: str) -> list[structlog.typing.EventDict]:
    return [entry for entry in logs if entry["event"] == name]


def _noop_registry() -> TaskRegistry:
    registry = TaskRegistry()

    @registry.task("noop")
    async def noop(_job: JobContext) -> None:
        pass

    return registry


async def test_a_service_that_raises_is_logged_once_counted_restarted_and_keeps_working(
    pool: asyncpg.Pool,
    queue: Queue,
    start_worker: StartWorker,
    logs: list[structlog.typing.EventDict],
) -> None:
    faulty = FaultyQueue(pool)
    faulty.claim_faults.append(RuntimeError("a bug in the claim loop"))
    events = ServiceLog()
    await start_worker(_noop_registry(), queue=faulty, events=events)

    job_id = await queue.enqueue(NewJob(type="noop", payload={}))
    await wait_for_status(queue, job_id, JobStatus.COMPLETED)

    [crashed] = _events(logs, "service_crashed")
    assert crashed["service"] == "claim"
    assert crashed["error_type"] == "RuntimeError"
    assert crashed["log_level"] == "error"
    assert crashed["exc_info"] is True  # the traceback goes with the line
    assert events.errors == {("claim", "crash"): 1}
    assert events.restarts["claim"] == 1


async def test_a_transient_error_backs_off_and_the_service_recovers(
    pool: asyncpg.Pool,
    queue: Queue,
    start_worker: StartWorker,
    logs: list[structlog.typing.EventDict],
) -> None:
    faulty = FaultyQueue(pool)
    faulty.claim_faults.extend([_conflict(), _conflict()])
    events = ServiceLog()
    await start_worker(_noop_registry(), queue=faulty, events=events)

    job_id = await queue.enqueue(NewJob(type="noop", payload={}))
    await wait_for_status(queue, job_id, JobStatus.COMPLETED)

    retrying = _events(logs, "service_retrying")
    assert [entry["service"] for entry in retrying] == ["claim", "claim"]
    assert all(entry["log_level"] == "warning" for entry in retrying)
    # The shared backoff, growing within a streak: 0.05-0.1 s, then 0.1-0.2 s.
    assert 0.05 <= retrying[0]["retry_in_s"] <= 0.1 <= retrying[1]["retry_in_s"] <= 0.2
    assert not _events(logs, "service_crashed")
    assert events.errors == {("claim", "transient"): 2}


async def test_a_service_that_keeps_failing_turns_healthz_503_naming_it(
    pool: asyncpg.Pool, start_worker: StartWorker
) -> None:
    faulty = FaultyQueue(pool)
    faulty.always_fail_claim = RuntimeError("broken for good")
    worker = await start_worker(_noop_registry(), queue=faulty)
    side = SidePortServer("127.0.0.1", 0, lambda: worker.runner.health(STALL_AFTER_S))
    side.start()
    try:
        url = f"http://127.0.0.1:{side.port}/healthz"

        async def unhealthy() -> bool:
            response = await asyncio.to_thread(httpx.get, url, timeout=5)
            return response.status_code == 503

        # FAILING_AFTER_CRASHES restarts with backoff in between: a few seconds.
        await eventually(unhealthy, timeout_s=20)
        body = (await asyncio.to_thread(httpx.get, url, timeout=5)).json()
        assert body["failing_services"] == ["claim"]
        assert "service failing: claim" in body["problems"]

        faulty.always_fail_claim = None  # fixed: the next turn clears the state

        async def healthy() -> bool:
            response = await asyncio.to_thread(httpx.get, url, timeout=5)
            return response.status_code == 200

        await eventually(healthy, timeout_s=20)
    finally:
        side.stop()


async def test_the_heartbeat_keeps_extending_leases_after_an_unexpected_failure(
    pool: asyncpg.Pool, queue: Queue, start_worker: StartWorker
) -> None:
    release = asyncio.Event()
    registry = TaskRegistry()

    @registry.task("wait")
    async def wait(_job: JobContext) -> None:
        await release.wait()

    faulty = FaultyQueue(pool)
    faulty.heartbeat_faults.append(RuntimeError("a bug in the heartbeat"))
    events = ServiceLog()
    # A lease of ten beats: a loaded machine may delay a beat or two without the lease running
    # out, but a heartbeat that stayed dead would lose it within the wait below.
    worker = await start_worker(registry, queue=faulty, events=events, lease_s=2.0, heartbeat_s=0.2)
    job_id = await queue.enqueue(NewJob(type="wait", payload={}))
    rescues = Supervisor([Rescuer(queue, interval_s=0.05)])
    rescues.start()
    try:
        await wait_for_status(queue, job_id, JobStatus.RUNNING)
        await eventually(holds(lambda: events.errors["heartbeat", "crash"] == 1))
        beats = faulty.heartbeats
        # Several leases' worth of time: without beats, the rescuer would take the job back.
        await eventually(holds(lambda: faulty.heartbeats >= beats + 20), timeout_s=30)
        assert (await queue.get(job_id)).status is JobStatus.RUNNING
        release.set()
        job = await wait_for_status(queue, job_id, JobStatus.COMPLETED)
    finally:
        release.set()
        await rescues.stop()
    assert job.attempts == 1  # never rescued, never run twice
    assert worker.runner.health(STALL_AFTER_S).ok


async def test_a_deadlock_aborting_finish_or_heartbeat_is_retried(
    pool: asyncpg.Pool, queue: Queue, start_worker: StartWorker
) -> None:
    release = asyncio.Event()
    registry = _noop_registry()

    @registry.task("wait")
    async def wait(_job: JobContext) -> None:
        await release.wait()

    faulty = FaultyQueue(pool)
    faulty.finish_faults.extend([_conflict(), _conflict()])
    faulty.heartbeat_faults.append(_conflict())
    events = ServiceLog()
    await start_worker(registry, queue=faulty, events=events, heartbeat_s=0.05)
    waiting = await queue.enqueue(NewJob(type="wait", payload={}))
    noop = await queue.enqueue(NewJob(type="noop", payload={}))

    await wait_for_status(queue, noop, JobStatus.COMPLETED)  # the completer retried
    await eventually(holds(lambda: not faulty.heartbeat_faults))
    beats = faulty.heartbeats
    await eventually(holds(lambda: faulty.heartbeats > beats + 2))  # the next beats went on
    release.set()
    await wait_for_status(queue, waiting, JobStatus.COMPLETED)
    assert not faulty.finish_faults
    assert ("heartbeat", "crash") not in events.errors
    assert ("completer", "crash") not in events.errors


@pytest.mark.parametrize("timeout_s", ["NaN", "-1", "Infinity"])
async def test_a_job_whose_stored_timeout_is_unusable_fails_and_the_worker_goes_on(
    timeout_s: str,
    pool: asyncpg.Pool,
    queue: Queue,
    start_worker: StartWorker,
    logs: list[structlog.typing.EventDict],
) -> None:
    bad = await queue.enqueue(NewJob(type="noop", payload={"secret": "p-marker"}, max_attempts=1))
    # Written straight into the row, as an old bug or a hand-made UPDATE could have left it
    # before the table had its CHECKs (dropped here, in this test's own database).
    async with pool.acquire() as conn, conn.transaction():
        for check in ("ck_jobs_timeout_positive", "ck_jobs_timeout_in_range"):
            await conn.execute(f"ALTER TABLE jobs DROP CONSTRAINT IF EXISTS {check}")
        await conn.execute(
            "UPDATE jobs SET timeout_s = CAST($1::text AS float8) WHERE id = $2", timeout_s, bad
        )
    events = ServiceLog()
    await start_worker(_noop_registry(), events=events)

    if timeout_s == "Infinity":  # capped at the longest timeout allowed: it simply runs
        await wait_for_status(queue, bad, JobStatus.COMPLETED)
        return
    failed = await wait_for_status(queue, bad, JobStatus.FAILED)
    good = await queue.enqueue(NewJob(type="noop", payload={}))
    await wait_for_status(queue, good, JobStatus.COMPLETED)
    assert failed.error_message == "internal error running the job: ValueError"
    [line] = _events(logs, "job_internal_error")
    assert line["job_id"] == str(bad)
    assert "p-marker" not in repr(logs)
    assert not events.errors  # no service noticed anything


async def test_stopping_twice_is_harmless() -> None:
    turns = 0

    async def loop() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0.01)

    supervisor = Supervisor([LoopService("loop", loop, lambda: turns)])
    await supervisor.stop()  # before start: nothing to stop
    supervisor.start()
    supervisor.start()  # starts nothing twice
    await eventually(holds(lambda: turns > 2))
    await supervisor.stop()
    await supervisor.stop()
    stopped_at = turns
    await asyncio.sleep(0)
    assert turns == stopped_at


async def test_a_runner_asked_to_stop_twice_drains_once(
    queue: Queue, start_worker: StartWorker
) -> None:
    worker = await start_worker(_noop_registry())
    job_id = await queue.enqueue(NewJob(type="noop", payload={}))
    await wait_for_status(queue, job_id, JobStatus.COMPLETED)
    worker.runner.request_stop()
    worker.runner.request_stop()
    await worker.stop()
    await worker.runner.supervisor.stop()  # once more, after the runner's own
    assert worker.task.done()
    assert worker.task.exception() is None
