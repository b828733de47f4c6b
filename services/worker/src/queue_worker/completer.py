"""Group commit for job outcomes: many jobs' outcomes recorded in one ``finish`` statement.

Each finished job hands its outcome to :meth:`Completer.record` and waits for the result. One
flush task at a time writes everything waiting in a single statement; outcomes that arrive
while it is in flight form the next batch. Under load the batches grow by themselves (no timer,
no added latency when idle), which is what takes a worker from a few thousand jobs a second
(one round trip and one commit per job) to tens of thousands.

While the database is unreachable the batch is kept and retried with backoff: an outcome is
never dropped. Only :meth:`abandon` (the shutdown deadline) gives up, and then the leases run
out and the rescuer puts the jobs back (at-least-once).
"""

import asyncio
import random
from dataclasses import dataclass

from queue_core.errors import DatabaseUnavailableError
from queue_core.jobs import Outcome
from queue_core.log import get_logger
from queue_core.queue import Queue
from queue_core.states import JobStatus

log = get_logger("queue_worker.completer")

MAX_BATCH = 1000
RETRY_MAX_S = 5.0


@dataclass(slots=True)
class _Waiting:
    outcome: Outcome
    done: asyncio.Future[JobStatus | None]


class Completer:
    def __init__(self, queue: Queue, worker_id: str, *, max_batch: int = MAX_BATCH) -> None:
        self._queue = queue
        self._worker_id = worker_id
        self._max_batch = max_batch
        self._waiting: list[_Waiting] = []
        self._flusher: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._waiting)

    async def record(self, outcome: Outcome) -> JobStatus | None:
        """Record ``outcome``; returns the job's new status, or None when the job was no
        longer leased to this worker (rescued or finished elsewhere) and was left alone."""
        done: asyncio.Future[JobStatus | None] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(outcome, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="completer")
        return await done

    async def _flush(self) -> None:
        delay = 0.1
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            try:
                recorded = await self._queue.finish(
                    worker_id=self._worker_id, outcomes=[w.outcome for w in batch]
                )
            except DatabaseUnavailableError as exc:
                log.warning(
                    "record_outcomes_retry", jobs=len(batch), error=str(exc), retry_in_s=delay
                )
                await asyncio.sleep(delay * random.uniform(0.75, 1.25))  # noqa: S311 - jitter
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            except Exception as exc:
                # A bug of ours, not an outage: retrying would loop forever. The leases run out
                # and the rescuer puts these jobs back, so they are delayed, not lost.
                log.exception("record_outcomes_failed", jobs=len(batch))
                del self._waiting[: len(batch)]
                for waiting in batch:
                    if not waiting.done.done():
                        waiting.done.set_exception(exc)
                continue
            delay = 0.1
            del self._waiting[: len(batch)]
            statuses = {r.job_id: r.status for r in recorded}
            for waiting in batch:
                if not waiting.done.done():
                    waiting.done.set_result(statuses.get(waiting.outcome.job_id))

    def abandon(self) -> int:
        """Stop trying (the worker is out of time). Returns how many outcomes were dropped."""
        if self._flusher is not None:
            self._flusher.cancel()
        dropped = len(self._waiting)
        for waiting in self._waiting:
            if not waiting.done.done():
                waiting.done.cancel()
        self._waiting.clear()
        return dropped
