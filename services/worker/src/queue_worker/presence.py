"""The worker in the ``workers`` table: the ``presence`` service.

At start, and then every :data:`~queue_core.fleet.WORKER_BEAT_S` (±25 %), one upsert says
who this worker is (its lease owner id, host, pid, queues, task types, concurrency) and that
it is alive; the same statement deletes the rows of workers silent for three beats. On a clean
shutdown :meth:`Presence.leave` deletes the row. ``GET /v1/workers`` lists the live rows, and
the API checks against them that some worker serves what it enqueues.
"""

import asyncio

from queue_core.fleet import WORKER_BEAT_S, Fleet, WorkerInfo
from queue_core.log import get_logger
from queue_core.retry import jittered

log = get_logger("queue_worker.presence")


class Presence:
    def __init__(
        self, fleet: Fleet, info: WorkerInfo, *, interval_s: float = WORKER_BEAT_S
    ) -> None:
        self.name = "presence"
        self.turns = 0  # beats written: the supervisor's measure of progress
        self._fleet = fleet
        self._info = info
        self._interval_s = interval_s

    async def run(self) -> None:
        while True:
            await self._fleet.beat(self._info)
            if self.turns == 0:
                log.info("worker_registered", worker_id=self._info.id)
            self.turns += 1
            await asyncio.sleep(jittered(self._interval_s))

    async def leave(self) -> None:
        """Delete this worker's row. Call it once the service is stopped, or a beat could
        register it again."""
        await self._fleet.leave(self._info.id)
        log.info("worker_unregistered", worker_id=self._info.id)
