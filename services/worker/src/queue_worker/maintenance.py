"""Maintenance that every worker replica runs: rescuing jobs whose worker was lost, settling
the dependants of jobs whose outcome was recorded by a process that died before settling them
(``queue_core.dependencies``), and repairing waiting jobs a hand edit left waiting for ever
(a parent deleted: failed; a count no edge backs: made due); and the settler, which settles
the dependants of the outcomes this worker records.

Safe on any number of replicas at once: the rescue statement takes rows with SKIP LOCKED and
re-checks each lease on the locked row, so two rescuers never take the same job and a lease
renewed at the last moment is left alone; settling is idempotent.
"""

import asyncio
import itertools
import math
import time
import uuid
from collections.abc import Iterable
from typing import Final

from queue_core.log import get_logger
from queue_core.queue import Queue
from queue_core.retry import jittered
from queue_worker.events import NoEvents, WorkerEvents

log = get_logger("queue_worker.maintenance")

RESCUE_BATCH = 1000
# Parents whose dependants one settling call takes up.
SETTLE_BATCH: Final = 1000
# How often a rescuer looks for waiting jobs a hand edit left waiting for ever: a dependency
# deleted (Queue.fail_orphaned_dependants) or a count no edge backs
# (Queue.release_miscounted_dependants). Each reads every waiting job, so not on every pass.
ORPHAN_SWEEP_INTERVAL_S: Final = 600.0


class Rescuer:
    def __init__(
        self,
        queue: Queue,
        interval_s: float,
        batch: int = RESCUE_BATCH,
        events: WorkerEvents | None = None,
    ) -> None:
        self._events: WorkerEvents = events or NoEvents()
        self._queue = queue
        self._interval_s = interval_s
        self._batch = batch
        self.name = "rescuer"
        self.turns = 0  # rescue passes done: the supervisor's measure of progress
        self._orphans_swept_at = -math.inf  # monotonic seconds: the first pass sweeps

    async def rescue_once(self) -> int:
        """Rescue every expired lease now, in batches. Returns how many jobs were taken back."""
        total = 0
        while True:
            rescued = await self._queue.rescue_expired(limit=self._batch)
            for job in rescued:
                log.warning(
                    "job_rescued",
                    job_id=str(job.job_id),
                    status=job.status.value,
                    lost_worker=job.lost_worker,
                )
            self._events.jobs_rescued(rescued)
            total += len(rescued)
            if len(rescued) < self._batch:
                break
        await self._queue.settle_stragglers(limit=self._batch)
        if time.monotonic() - self._orphans_swept_at >= ORPHAN_SWEEP_INTERVAL_S:
            # Each full batch leaves the waiting set (failed, or due), so both loops end.
            while await self._queue.fail_orphaned_dependants(limit=self._batch) == self._batch:
                pass
            while await self._queue.release_miscounted_dependants(limit=self._batch) == self._batch:
                pass
            self._orphans_swept_at = time.monotonic()
        return total

    async def run(self) -> None:
        """Rescue on a jittered interval until cancelled. Errors end the call: it runs as a
        supervised service (supervisor.py), which backs off and calls it again."""
        while True:
            await asyncio.sleep(jittered(self._interval_s))
            await self.rescue_once()
            self.turns += 1


class Settler:
    """Settles the dependants of the jobs whose outcomes this worker recorded, off the
    completer's path: a chain of thousands failing with its first job takes seconds to settle,
    and outcomes waiting behind it would outlive their leases (and run again elsewhere). What
    is still pending here when the worker stops, or what fails, the rescuer's sweep settles."""

    def __init__(self, queue: Queue) -> None:
        self._queue = queue
        self._pending: set[uuid.UUID] = set()
        self._more = asyncio.Event()
        self.name = "settler"
        self.turns = 0  # settling calls made: the supervisor's measure of progress

    def submit(self, job_ids: Iterable[uuid.UUID]) -> None:
        self._pending.update(job_ids)
        if self._pending:
            self._more.set()

    async def run(self) -> None:
        while True:
            # Waits only with nothing left: run again after a crash, it carries on with what
            # was submitted before.
            if not self._pending:
                self._more.clear()
                await self._more.wait()
            batch = list(itertools.islice(self._pending, SETTLE_BATCH))
            self._pending.difference_update(batch)
            try:
                await self._queue.settle_dependants(batch)  # settles what it can, logs the rest
            except BaseException:
                self._pending.update(batch)  # for the run after the supervisor's restart
                raise
            self.turns += 1
