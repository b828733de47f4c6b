"""The ``retention`` service: every replica runs it, one at a time does the work.

Every ``WORKER_RETENTION_INTERVAL_S`` (±25 %), starting at once, it runs a round of
:class:`queue_core.retention.Retention`: a replica that gets the advisory lock deletes the
finished jobs past their retention in batches, logs ``retention_round`` with what it deleted
(at debug level when nothing), and reports the oldest finished job's age; one that does not
get it logs ``retention_skipped`` (at debug level) and withdraws its oldest-age series, so
that the replica doing the work is the only one reporting them. Errors end ``run()``: the supervisor
logs, counts and restarts it with backoff (supervisor.py).

One error is not left to the supervisor: a database role without DELETE on ``jobs`` (the
worker's group role gets it from a migration). Restarting would not help and the crash streak
would fail the worker's ``/healthz``, so the round logs ``retention_not_permitted`` and counts
a failure instead, and the worker keeps running jobs.
"""

import asyncio
from typing import Protocol

import asyncpg

from queue_core.log import get_logger
from queue_core.retention import RETAINED_STATUSES, Retention, RoundResult
from queue_core.retry import jittered
from queue_core.states import JobStatus

log = get_logger("queue_worker.retention")


class RetentionEvents(Protocol):
    def retention_round(self, result: RoundResult) -> None:
        """A round ended: worked (``result.locked``) or skipped."""

    def retention_failed(self) -> None:
        """A round ended in an error."""


class NoRetentionEvents:
    def retention_round(self, result: RoundResult) -> None:
        pass

    def retention_failed(self) -> None:
        pass


class RetentionService:
    def __init__(
        self,
        retention: Retention,
        interval_s: float,
        events: RetentionEvents | None = None,
    ) -> None:
        self.name = "retention"
        self.turns = 0  # rounds ended, worked or skipped: the supervisor's measure of progress
        self._retention = retention
        self._interval_s = interval_s
        self._events: RetentionEvents = events or NoRetentionEvents()

    async def run_once(self) -> RoundResult | None:
        """One round now; None when the database role may not delete jobs."""
        try:
            result = await self._retention.run_round()
        except asyncpg.InsufficientPrivilegeError as exc:
            self._events.retention_failed()
            log.error("retention_not_permitted", error=exc.message)  # noqa: TRY400 - no trace needed
            return None
        except asyncio.CancelledError:
            raise  # the worker is stopping: the round was cut short, it did not fail
        except BaseException:
            self._events.retention_failed()
            raise
        self._events.retention_round(result)
        if result.locked:
            # At info when it deleted something, else at debug: a quiet round a minute is noise.
            emit = log.info if any(result.deleted.values()) else log.debug
            emit(
                "retention_round",
                deleted={s.value: n for s, n in result.deleted.items()},
                batches={s.value: n for s, n in result.batches.items()},
                oldest_finished_s={
                    s.value: None if age is None else round(age, 3)
                    for s, age in result.oldest_s.items()
                },
            )
        else:
            log.debug("retention_skipped")
        return result

    async def run(self) -> None:
        while True:
            await self.run_once()
            self.turns += 1
            await asyncio.sleep(jittered(self._interval_s))


def retention_by_status(
    completed_s: float, failed_s: float, cancelled_s: float
) -> dict[JobStatus, float | None]:
    """The settings' seconds per status, 0 meaning "keep for good" (None)."""
    seconds = dict(zip(RETAINED_STATUSES, (completed_s, failed_s, cancelled_s), strict=True))
    return {status: (s if s > 0 else None) for status, s in seconds.items()}
