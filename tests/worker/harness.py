"""Running the worker's Runner in-process against a test's database, and watching it.

Imported by the tests as ``worker.harness`` (``tests/`` is on the path, and that is also the
module name mypy gives this file).
"""

import asyncio
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import asyncpg

from helpers import eventually
from queue_core.errors import DatabaseUnavailableError, JobNotFoundError
from queue_core.jobs import ClaimedJob, JobRecord, Lease, Outcome, Recorded
from queue_core.queue import Queue
from queue_core.retry import Backoff
from queue_core.states import JobStatus
from queue_core.tasks import TaskRegistry
from queue_worker.events import WorkerEvents
from queue_worker.listener import Listener
from queue_worker.pauses import PauseWatcher
from queue_worker.runner import STUCK_GRACE_S, Runner
from queue_worker.settings import DEFAULT_JOB_TIMEOUT_S, DEFAULT_MAX_RESULT_BYTES
from queue_worker.supervisor import Supervisor

# Retries in milliseconds instead of seconds, so a test sees every attempt quickly.
FAST_BACKOFF = Backoff(base_s=0.01, cap_s=0.05)


def holds(predicate: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    """A synchronous condition in the shape :func:`helpers.eventually` polls."""

    async def check() -> bool:
        return predicate()

    return check


async def wait_for_status(
    queue: Queue, job_id: uuid.UUID, status: JobStatus, *, timeout_s: float = 10.0
) -> JobRecord:
    """The job once it has ``status``; fails with the job's last state at the deadline."""
    last: list[JobRecord] = []

    async def reached() -> bool:
        try:
            job = await queue.get(job_id)
        except JobNotFoundError:
            return False
        last[:] = [job]
        return job.status is status

    try:
        await eventually(reached, timeout_s=timeout_s)
    except AssertionError as exc:
        state = (
            f"{last[0].status} after {last[0].attempts} attempt(s), error {last[0].error_message!r}"
            if last
            else "missing"
        )
        raise AssertionError(f"job {job_id} not {status} within {timeout_s} s: {state}") from exc
    return last[0]


class RecordingQueue(Queue):
    """The real queue, counting what the runner asks of it and the outages it runs into."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.claims = 0
        self.heartbeats = 0  # heartbeat statements that returned (or failed)
        self.unavailable = 0  # DatabaseUnavailableError raised by any call
        self.record_unavailable = 0  # ... while recording an outcome, which must be retried
        self.outcomes_held = asyncio.Event()  # cleared: outcomes wait before being written
        self.outcomes_held.set()

    async def claim(
        self, *, worker_id: str, queues: Sequence[str], limit: int, lease_s: float
    ) -> list[ClaimedJob]:
        try:
            return await super().claim(
                worker_id=worker_id, queues=queues, limit=limit, lease_s=lease_s
            )
        except DatabaseUnavailableError:
            self.unavailable += 1
            raise
        finally:
            self.claims += 1

    async def heartbeat(
        self, *, worker_id: str, attempts: Sequence[tuple[uuid.UUID, int]], lease_s: float
    ) -> list[Lease]:
        try:
            return await super().heartbeat(worker_id=worker_id, attempts=attempts, lease_s=lease_s)
        finally:
            self.heartbeats += 1

    async def finish(
        self, *, worker_id: str, outcomes: Sequence[Outcome], settle_now: bool = True
    ) -> list[Recorded]:
        await self.outcomes_held.wait()
        try:
            return await super().finish(
                worker_id=worker_id, outcomes=outcomes, settle_now=settle_now
            )
        except DatabaseUnavailableError:
            self.unavailable += 1
            self.record_unavailable += 1
            raise


@dataclass
class RunningWorker:
    runner: Runner
    queue: RecordingQueue
    listener: Listener | None = None
    # NOTIFYs the listener passed on to the runner (plus one per (re)connect).
    notifications: int = 0
    _task: "asyncio.Task[None] | None" = field(default=None, repr=False)
    _listener_supervisor: Supervisor | None = field(default=None, repr=False)

    def start(self) -> None:
        self._task = asyncio.create_task(self.runner.run(), name="test-runner")

    @property
    def task(self) -> "asyncio.Task[None]":
        """The task running ``runner.run()``."""
        assert self._task is not None, "the runner was not started"
        return self._task

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the runner to stop and wait for run() to return (drain included)."""
        self.runner.request_stop()
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(self.task)
        finally:
            await self.stop_listening()

    async def stop_listening(self) -> None:
        if self._listener_supervisor is not None:
            await self._listener_supervisor.stop()
            self._listener_supervisor = None

    def on_notify(self) -> None:
        self.notifications += 1
        self.runner.wake()

    def start_listening(self, database_url: str, queues: Sequence[str]) -> None:
        # Under a supervisor of its own, as in the worker: reconnecting is its restart.
        self.listener = Listener(database_url, queues, self.on_notify)
        self._listener_supervisor = Supervisor([self.listener])
        self._listener_supervisor.start()


class StartWorker(Protocol):
    async def __call__(
        self,
        registry: TaskRegistry,
        *,
        concurrency: int = 4,
        poll_interval_s: float = 0.05,
        lease_s: float = 30.0,
        heartbeat_s: float = 5.0,
        shutdown_grace_s: float = 10.0,
        backoff: Backoff = FAST_BACKOFF,
        queues: tuple[str, ...] = ("default",),
        database_url: str | None = None,
        listen: bool = False,
        worker_id: str | None = None,
        job_timeout_s: float = DEFAULT_JOB_TIMEOUT_S,
        stuck_grace_s: float = STUCK_GRACE_S,
        queue: RecordingQueue | None = None,
        events: WorkerEvents | None = None,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        pauses: PauseWatcher | None = None,
    ) -> RunningWorker: ...


class LoopWatchdog:
    """Notices an event loop that stops turning (code that never yields) and stops the runners
    from its own thread, so that such a test fails with a message instead of hanging."""

    def __init__(self, stall_s: float = 3.0) -> None:
        self.stall_s = stall_s
        self.fired = False
        self._runners: list[Runner] = []
        self._last_tick = time.monotonic()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)
        self._ticker: asyncio.Task[None] | None = None

    def consume(self) -> bool:
        """Whether it fired; a test that asserts this itself spares the fixture reporting it."""
        fired, self.fired = self.fired, False
        return fired

    def watch(self, runner: Runner) -> None:
        self._runners.append(runner)

    def start(self) -> None:
        self._ticker = asyncio.create_task(self._tick(), name="loop-watchdog-tick")
        self._thread.start()

    async def _tick(self) -> None:
        while True:
            self._last_tick = time.monotonic()
            await asyncio.sleep(0.05)  # a heartbeat, not a wait for some state

    def _watch(self) -> None:
        while not self._closed.wait(0.1):
            if time.monotonic() - self._last_tick > self.stall_s:
                self.fired = True
                # The loop is not running, so nothing else touches the runner meanwhile.
                for runner in self._runners:
                    runner.request_stop()
                self._last_tick = time.monotonic()

    async def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
