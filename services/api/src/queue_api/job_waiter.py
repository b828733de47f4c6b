"""Waiting for jobs to finish (``GET /v1/jobs/{id}?wait=S``), at no cost to the queue.

The finish path sends no NOTIFY: every job would pay for it, waited on or not. Instead each API
process runs one poller, only while someone waits: every :data:`POLL_INTERVAL_S` it asks which
of all the waited-for jobs have finished, in one statement by primary key
(``listing.sql: finished_among``), and wakes their waiters. A finished job is seen within one
interval; idle, the poller does not exist.

At most :data:`MAX_WAITERS` requests wait at once per process (each holds a connection to its
client and a future here, not a database connection). One more is told so (:meth:`wait`
returns ``None``) and answers at once with the job as it is: waiting is a courtesy, never
needed for a correct answer, and a client polling again sees the same job. A waiter whose
client goes away, or whose request is cancelled, is removed at once (``finally``), so nothing
outlives its request.
"""

import asyncio
import contextlib
import uuid
from typing import Final

from queue_core.errors import TransientDatabaseError
from queue_core.listing import JobListing
from queue_core.log import get_logger

log = get_logger("queue_api.job_waiter")

POLL_INTERVAL_S: Final = 0.05
MAX_WAITERS: Final = 1000
MAX_WAIT_S: Final = 60.0


class JobWaiter:
    """One per API process: see the module's docstring."""

    def __init__(
        self,
        listing: JobListing,
        *,
        poll_interval_s: float = POLL_INTERVAL_S,
        max_waiters: int = MAX_WAITERS,
    ) -> None:
        self._listing = listing
        self._poll_interval_s = poll_interval_s
        self._max_waiters = max_waiters
        self._waiting: dict[uuid.UUID, set[asyncio.Future[None]]] = {}
        self._count = 0
        self._poller: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """Requests waiting now."""
        return self._count

    @property
    def polling(self) -> bool:
        return self._poller is not None and not self._poller.done()

    async def wait(self, job_id: uuid.UUID, timeout_s: float) -> bool | None:
        """Wait up to ``timeout_s`` for the job to finish: True once it has, False at the
        timeout, None without waiting when :data:`MAX_WAITERS` already wait."""
        if self._count >= self._max_waiters:
            log.warning("job_wait_refused", waiting=self._count, limit=self._max_waiters)
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(job_id, set()).add(future)
        self._count += 1
        if not self.polling:
            self._poller = asyncio.create_task(self._poll(), name="job-waiter-poll")
        try:
            async with asyncio.timeout(timeout_s):
                await future
        except TimeoutError:
            return False
        finally:
            self._forget(job_id, future)
        return True

    def _forget(self, job_id: uuid.UUID, future: asyncio.Future[None]) -> None:
        futures = self._waiting.get(job_id)
        if futures is not None and future in futures:
            futures.discard(future)
            self._count -= 1
            if not futures:
                del self._waiting[job_id]

    async def _poll(self) -> None:
        """Until nobody waits: sleep an interval, then wake the waiters of finished jobs."""
        while self._waiting:
            await asyncio.sleep(self._poll_interval_s)
            ids = list(self._waiting)
            if not ids:
                break
            try:
                finished = await self._listing.finished_among(ids)
            except TransientDatabaseError as exc:
                # The waiters time out on their own and read the job then (a 503 if the
                # database is still away); keep polling meanwhile.
                log.warning("job_wait_poll_failed", error=str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - waiters must not be left unserved; logged
                log.error("job_wait_poll_error", error_type=type(exc).__name__)  # noqa: TRY400
                continue
            for job_id in finished:
                for future in self._waiting.get(job_id, ()):
                    if not future.done():
                        future.set_result(None)

    async def close(self) -> None:
        """Stop the poller (at shutdown); waiters time out or are cancelled with their
        requests."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
