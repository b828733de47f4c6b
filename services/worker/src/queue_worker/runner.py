"""The worker's claim loop: lease due jobs up to the free slots, run them, record the outcome.

    ┌──────────── wake: NOTIFY, a freed slot, a jittered poll, stop ───────────┐
    ▼                                                                          │
  claim(limit = free slots) ──▶ one asyncio task per job ──▶ record outcome ───┘

Recording an outcome is shielded from cancellation and retried while the database is away:
work that was done is never silently forgotten. If the worker dies before recording, the lease
runs out and the job runs again (at-least-once delivery).
"""

import asyncio
import os
import random
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from queue_core.errors import DatabaseUnavailableError
from queue_core.jobs import ClaimedJob, Failure
from queue_core.log import get_logger
from queue_core.queue import Queue
from queue_core.retry import Backoff
from queue_core.tasks import JobContext, PermanentError, TaskRegistry

log = get_logger("queue_worker.runner")

MAX_ERROR_CHARS = 2000
DB_RETRY_MAX_S = 5.0


def jittered(seconds: float) -> float:
    """``seconds`` ±25 %: replicas started together drift apart instead of polling in step."""
    return seconds * random.uniform(0.75, 1.25)  # noqa: S311 - jitter, not cryptography


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    queues: tuple[str, ...]
    concurrency: int
    poll_interval_s: float
    lease_s: float
    shutdown_grace_s: float
    backoff: Backoff


class Runner:
    def __init__(
        self,
        queue: Queue,
        registry: TaskRegistry,
        config: RunnerConfig,
        *,
        worker_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queue = queue
        self._registry = registry
        self._config = config
        self.worker_id = worker_id or new_worker_id()
        self._clock = clock
        self._running: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.last_loop_at = clock()

    # -- signals from outside ------------------------------------------------------------

    def wake(self) -> None:
        """Something may be claimable now (a NOTIFY arrived, a slot was freed)."""
        self._wake.set()

    def request_stop(self) -> None:
        """Stop claiming; :meth:`run` then drains running jobs and returns."""
        if not self._stopping.is_set():
            log.info("worker_stopping", running=len(self._running))
        self._stopping.set()
        self._wake.set()

    @property
    def running(self) -> int:
        return len(self._running)

    def is_healthy(self, stall_after_s: float) -> bool:
        """False once the claim loop has not turned for ``stall_after_s``."""
        return self._clock() - self.last_loop_at < stall_after_s

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        log.info(
            "worker_started",
            worker_id=self.worker_id,
            queues=list(self._config.queues),
            concurrency=self._config.concurrency,
            tasks=self._registry.names(),
        )
        try:
            await self._claim_loop()
        finally:
            await self._drain()
        log.info("worker_stopped", worker_id=self.worker_id)

    async def _claim_loop(self) -> None:
        db_delay = 0.0
        while not self._stopping.is_set():
            self.last_loop_at = self._clock()
            free = self._config.concurrency - len(self._running)
            claimed = 0
            if free > 0:
                # Cleared before the claim, so a wake-up that arrives during it is not lost.
                self._wake.clear()
                try:
                    jobs = await self._queue.claim(
                        worker_id=self.worker_id,
                        queues=self._config.queues,
                        limit=free,
                        lease_s=self._config.lease_s,
                    )
                except DatabaseUnavailableError as exc:
                    db_delay = min(max(db_delay * 2, 0.1), DB_RETRY_MAX_S)
                    log.warning("claim_failed", error=str(exc), retry_in_s=round(db_delay, 2))
                    await self._sleep_unless_stopping(jittered(db_delay))
                    continue
                db_delay = 0.0
                claimed = len(jobs)
                for job in jobs:
                    self._start(job)
            if claimed and claimed == free:
                continue  # every slot is busy: the next turn waits for a freed one
            await self._wait_for_wake(jittered(self._config.poll_interval_s))

    async def _wait_for_wake(self, timeout_s: float) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        except TimeoutError:
            pass

    def _start(self, job: ClaimedJob) -> None:
        task = asyncio.create_task(self._execute(job), name=f"job:{job.id}")
        self._running[job.id] = task

        def done(_: asyncio.Task[None]) -> None:
            self._running.pop(job.id, None)
            self._wake.set()

        task.add_done_callback(done)

    # -- one job -------------------------------------------------------------------------

    async def _execute(self, job: ClaimedJob) -> None:
        started = self._clock()
        failure = await self._run_handler(job)
        duration_s = self._clock() - started
        # The work is done: recording it must survive the worker being cancelled.
        await asyncio.shield(self._record(job, failure))
        log.info(
            "job_finished",
            job_id=str(job.id),
            type=job.type,
            queue=job.queue,
            attempt=job.attempt,
            outcome="completed" if failure is None else "failed",
            duration_s=round(duration_s, 6),
            error=None if failure is None else failure.error,
        )

    async def _run_handler(self, job: ClaimedJob) -> Failure | None:
        task = self._registry.get(job.type)
        if task is None:
            return Failure(
                job.id,
                f"no handler registered for job type {job.type!r}",
                retry_in_s=0.0,
                final=True,
            )
        try:
            await task.run(JobContext.of(job))
        except Exception as exc:  # noqa: BLE001 - any handler error is a failed attempt
            error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
            return Failure(
                job.id,
                error,
                retry_in_s=self._config.backoff.delay(job.attempt),
                final=isinstance(exc, PermanentError),
            )
        return None

    async def _record(self, job: ClaimedJob, failure: Failure | None) -> None:
        """Write the outcome, retrying while the database is unreachable."""
        delay = 0.1
        while True:
            try:
                if failure is None:
                    kept = await self._queue.complete(worker_id=self.worker_id, job_ids=[job.id])
                else:
                    kept = {
                        o.job_id
                        for o in await self._queue.fail(
                            worker_id=self.worker_id, failures=[failure]
                        )
                    }
            except DatabaseUnavailableError as exc:
                log.warning(
                    "record_outcome_retry", job_id=str(job.id), error=str(exc), retry_in_s=delay
                )
                await asyncio.sleep(jittered(delay))
                delay = min(delay * 2, DB_RETRY_MAX_S)
                continue
            if job.id not in kept:
                # Our lease was taken away (rescued or cancelled) before we finished.
                log.warning("job_outcome_discarded", job_id=str(job.id), reason="lease lost")
            return

    async def _drain(self) -> None:
        """Let running jobs finish within the grace period, then cancel the rest."""
        if not self._running:
            return
        log.info(
            "worker_draining", running=len(self._running), grace_s=self._config.shutdown_grace_s
        )
        _, late = await asyncio.wait(
            list(self._running.values()), timeout=self._config.shutdown_grace_s
        )
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
            log.warning("worker_drain_cancelled_jobs", cancelled=len(late))
