"""Does any live worker serve what is being enqueued? ``API_REJECT_UNKNOWN_TYPES``.

Workers register the queues they serve and the job types they have handlers for (the
``workers`` table, ``queue_core.fleet``). The API reads the live ones at most once per
:data:`WORKERS_CACHE_S` per process (one query every few seconds, never one per request;
concurrent requests share the read) and checks each job's (type, queue) against them:

- ``API_REJECT_UNKNOWN_TYPES=true``: a job no live worker serves is refused with 422, saying
  which; a batch is refused whole.
- otherwise (the default) the job is accepted, counted in ``queue_api_jobs_unserved_total``,
  and logged as ``job_unserved`` at most once per :data:`WARN_EVERY_S`, with how many since.
  The log names the type and queue only if they are among those metrics name
  (``API_METRICS_JOB_TYPES``, ``API_METRICS_QUEUES``), else ``other``: they are the client's
  words, which the API's logs never carry. With no live worker at all, nothing is counted or
  logged: there is nothing to compare with (no worker started yet, or workers of a version that
  does not register, during a rolling upgrade), and the "no worker up" alert says the rest.

A failed read keeps the last known workers; with none known yet, the check is skipped when
only warning, and the request gets a 503 when refusing (it could not be stored anyway).
A worker starting up takes up to one cache period to count, and one stopped uncleanly is
counted until it has been silent for ``WORKER_GONE_AFTER_S``.
"""

import asyncio
import time
from collections.abc import Iterable
from typing import Final

from litestar.exceptions import HTTPException
from prometheus_client import Counter

from queue_core.errors import TransientDatabaseError
from queue_core.fleet import Fleet
from queue_core.log import get_logger
from queue_core.metric_labels import OTHER_LABEL

log = get_logger("queue_api.served")

WORKERS_CACHE_S: Final = 5.0
WARN_EVERY_S: Final = 60.0
HTTP_422_UNPROCESSABLE: Final = 422

JOBS_UNSERVED = Counter(
    "queue_api_jobs_unserved_total",
    "Jobs accepted although no live worker serves their type on their queue "
    "(API_REJECT_UNKNOWN_TYPES=false; with true they are refused with 422).",
)


class WorkerDirectory:
    """The (type, queue) pairs the live workers serve, cached; one per app."""

    def __init__(
        self,
        *,
        reject_unknown: bool,
        cache_s: float = WORKERS_CACHE_S,
        named_types: Iterable[str] = (),
        named_queues: Iterable[str] = (),
    ) -> None:
        """``named_types``, ``named_queues``: what a log line may name (the rest: other)."""
        self._reject = reject_unknown
        self._named_types = frozenset(named_types)
        self._named_queues = frozenset(named_queues)
        self._cache_s = cache_s
        self._fleet: Fleet | None = None
        self._served: frozenset[tuple[str, str]] | None = None
        self._read_at = -float("inf")
        self._lock = asyncio.Lock()
        self._warned_at = -float("inf")
        self._unwarned = 0

    def attach(self, fleet: Fleet) -> None:
        self._fleet = fleet

    async def _served_now(self) -> frozenset[tuple[str, str]] | None:
        if time.monotonic() - self._read_at < self._cache_s:
            return self._served
        async with self._lock:  # one read for all the requests that find the cache stale
            if time.monotonic() - self._read_at < self._cache_s:
                return self._served
            if self._fleet is None:  # pragma: no cover - the lifespan attaches it first
                raise RuntimeError("WorkerDirectory used before attach()")
            try:
                workers = await self._fleet.live_workers()
            except TransientDatabaseError:
                if self._served is None and self._reject:
                    raise  # a 503; the next request reads again
                # The last known workers (or no check at all), until the next read is due:
                # an outage costs one failed read per period, not one per request.
                self._read_at = time.monotonic()
                return self._served
            self._served = frozenset(
                (job_type, queue)
                for w in workers
                for job_type in w.task_types
                for queue in w.queues
            )
            self._read_at = time.monotonic()
            return self._served

    async def check(self, jobs: Iterable[tuple[str, str]]) -> None:
        """``jobs``: (type, queue) of each job to enqueue. Raises a 422 when refusing."""
        served = await self._served_now()
        if served is None or (not served and not self._reject):
            return
        unserved = [job for job in jobs if job not in served]
        if not unserved:
            return
        job_type, queue = unserved[0]
        if self._reject:
            kinds = len(set(unserved))
            more = f" (and {kinds - 1} more type and queue pairs)" if kinds > 1 else ""
            raise HTTPException(
                status_code=HTTP_422_UNPROCESSABLE,
                detail=(
                    f"no live worker serves job type {job_type!r} on queue {queue!r}{more}: "
                    "start a worker with that handler on that queue (WORKER_TASKS, "
                    "WORKER_QUEUES), or check the type and queue names"
                ),
            )
        JOBS_UNSERVED.inc(len(unserved))
        self._unwarned += len(unserved)
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S:
            log.warning(
                "job_unserved",
                type=job_type if job_type in self._named_types else OTHER_LABEL,
                queue=queue if queue in self._named_queues else OTHER_LABEL,
                jobs_since_last_warning=self._unwarned,
                detail="no live worker serves this job type on this queue",
            )
            self._warned_at = now
            self._unwarned = 0
