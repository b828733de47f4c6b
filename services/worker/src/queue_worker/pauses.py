"""Which of the worker's queues are paused: the ``pauses`` service.

A paused queue is a row in the ``queues`` table (``POST /v1/queues/{name}/pause``), so a pause
outlives every worker restart. Each worker reads which of its queues are paused at least every
:data:`PAUSE_REFRESH_S` (±25 %, so under a second), and at once when the listener passes on a
NOTIFY from a pause or resume; the claim loop then claims only from the others, with the claim
statement unchanged. Running jobs of a paused queue finish.

Fail safe: a read that fails keeps the last known set (the supervisor logs it, counts it and
runs the service again), and until the first read succeeds the worker claims nothing, so that
a worker starting while its queue is paused never takes that queue's jobs.
"""

import asyncio
from collections.abc import Callable, Sequence
from typing import Final

from queue_core.fleet import Fleet
from queue_core.log import get_logger
from queue_core.retry import jittered

log = get_logger("queue_worker.pauses")

# 0.8 s ±25 %: a pause reaches a worker that missed its NOTIFY within a second.
PAUSE_REFRESH_S: Final = 0.8


class PauseWatcher:
    def __init__(
        self,
        fleet: Fleet,
        queues: Sequence[str],
        *,
        interval_s: float = PAUSE_REFRESH_S,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.name = "pauses"
        self.turns = 0  # reads done: the supervisor's measure of progress
        self.on_change = on_change
        self._fleet = fleet
        self._queues = tuple(queues)
        self._interval_s = interval_s
        self._refresh = asyncio.Event()
        self.paused: frozenset[str] = frozenset()
        # The queues the claim loop may claim from; None until the first read succeeds.
        self.claimable: tuple[str, ...] | None = None

    def refresh_soon(self) -> None:
        """A pause or resume was announced (NOTIFY): read again now."""
        self._refresh.set()

    async def refresh(self) -> None:
        """Read the paused queues once. On an error the last known set stays in force."""
        paused = await self._fleet.paused_queues(self._queues)
        first = self.claimable is None
        if not first and paused == self.paused:
            return
        if paused != self.paused:
            log.info(
                "queues_paused_changed",
                paused=sorted(paused),
                resumed=sorted(self.paused - paused),
            )
        self.paused = paused
        self.claimable = tuple(q for q in self._queues if q not in paused)
        self.on_change()

    async def run(self) -> None:
        while True:
            self._refresh.clear()  # before reading: an announcement meanwhile is kept
            await self.refresh()
            self.turns += 1
            try:
                async with asyncio.timeout(jittered(self._interval_s)):
                    await self._refresh.wait()
            except TimeoutError:
                pass
