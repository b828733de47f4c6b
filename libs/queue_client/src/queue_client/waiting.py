"""``wait()``'s plan, shared by both clients: long polls (``GET /v1/jobs/{id}?wait=S``) until
the job finishes or the caller's deadline passes."""

import time
from collections.abc import Callable
from typing import Final

from queue_client.calls import MAX_WAIT_S

# An API process that already holds too many long polls answers at once; asking again sooner
# than this would spin.
MIN_POLL_INTERVAL_S: Final = 0.5


class Waiting:
    def __init__(
        self, timeout_s: float | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        # Also the deadline of each poll's retries: none starts after it.
        self.deadline = None if timeout_s is None else clock() + timeout_s
        self._started = clock()

    def poll_s(self) -> float:
        """The ``wait`` of the next request; marks its start."""
        self._started = self._clock()
        if self.deadline is None:
            return MAX_WAIT_S
        return min(max(self.deadline - self._started, 0.001), MAX_WAIT_S)

    def expired(self) -> bool:
        return self.deadline is not None and self._clock() >= self.deadline

    def pause_s(self) -> float:
        """How long to pause before the next poll: only when the last one came back early."""
        elapsed = self._clock() - self._started
        pause = max(MIN_POLL_INTERVAL_S - elapsed, 0.0)
        if self.deadline is not None:
            pause = min(pause, max(self.deadline - self._clock(), 0.0))
        return pause
