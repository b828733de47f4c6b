"""Reading many jobs: filtered pages of job summaries, and which of some jobs have finished.

Pages are keyset-paginated by id, newest first. Ids are UUIDv7 (``Queue.enqueue_many``), so id
order is creation order and a page's position is just the last id it showed; no page ever costs
a count or an OFFSET, however deep. The cursor carries that id to the client, opaque.

Every page reads a bounded number of rows, whatever the filters (:data:`SCAN_BUDGET`): a filter
that matches rarely, or no more (the end of the list), does not read the rest of a table of
millions to fill its page. Such a page comes back short, even empty, with a cursor that
continues the walk: only a page without ``next_cursor`` is the end.

Read-only: ``queue_core.queue.Queue`` stays the only code that changes a job.
"""

import base64
import binascii
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import asyncpg

from queue_core.db import translate_connection_errors
from queue_core.jobs import JobSummary
from queue_core.limits import SCHEDULED_AT_MAX, SCHEDULED_AT_MIN
from queue_core.sql import LISTING_QUERIES
from queue_core.states import STATUS_BY_VALUE, JobStatus

Q_LIST_JOBS = LISTING_QUERIES["list_jobs"]
Q_LIST_JOBS_SCAN_END = LISTING_QUERIES["list_jobs_scan_end"]
Q_FINISHED_AMONG = LISTING_QUERIES["finished_among"]
Q_RECENT_BY_QUEUE = LISTING_QUERIES["recent_by_queue"]

DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 1000
# Index entries a page may walk through (see the module's docstring): at 10 million jobs, up to
# 30 ms on the primary key (rows read from the table), 6 ms on ix_jobs_failed_cancelled
# (index-only). benchmarks/listing_bench.py measures it.
SCAN_BUDGET: Final = 20_000
# Jobs recent_by_queue reads at most: a window's counts past it are lower bounds.
RECENT_MAX_ROWS: Final = 50_000

# How far a job's created_at may be from the instant in its UUIDv7 id: the id is made by the
# API's clock just before the insert, created_at is the database's now() at the insert. Covers
# clock skew between the hosts and a wait for a pooled connection, with room to spare; the
# created_at filter itself stays exact, the margin only widens the id range scanned.
ID_TIME_MARGIN: Final = timedelta(hours=1)

# The instants a time filter may name: the range every stored timestamp is in (limits.py).
FILTER_TIME_MIN: Final = SCHEDULED_AT_MIN
FILTER_TIME_MAX: Final = SCHEDULED_AT_MAX

# The statuses ix_jobs_failed_cancelled holds (migration 0009).
_IN_OWN_INDEX: Final = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})
_UUID_VERSION_7: Final = 0x7000  # the version nibble of the 7th and 8th bytes


class InvalidCursorError(ValueError):
    """A cursor this API did not make (or one mangled on the way)."""

    def __init__(self) -> None:
        super().__init__("invalid cursor: pass back next_cursor from the previous page unchanged")


def encode_cursor(last_id: uuid.UUID) -> str:
    """The opaque cursor that continues after ``last_id``: base64url of its 16 bytes."""
    return base64.urlsafe_b64encode(last_id.bytes).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> uuid.UUID:
    """The id a cursor of :func:`encode_cursor` holds; :class:`InvalidCursorError` otherwise."""
    if len(cursor) != 22:  # 16 bytes in unpadded base64
        raise InvalidCursorError
    try:
        raw = base64.urlsafe_b64decode(cursor.encode("ascii") + b"==")
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise InvalidCursorError from exc
    # Re-encoding must give the same text: refuses non-alphabet characters that b64decode skips
    # and non-canonical last characters, so one position has exactly one cursor.
    if len(raw) != 16 or encode_cursor(uuid.UUID(bytes=raw)) != cursor:
        raise InvalidCursorError
    return uuid.UUID(bytes=raw)


def uuid7_floor(instant: datetime) -> uuid.UUID:
    """The smallest UUIDv7 made at or after ``instant`` (to the millisecond, rounded down):
    its 48-bit Unix milliseconds, the version, and zeros."""
    ms = int(instant.timestamp() * 1000)
    return uuid.UUID(int=(max(ms, 0) << 80) | (_UUID_VERSION_7 << 64))


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFilter:
    """Which jobs: every given condition holds (an empty filter: every job). Tuples are ORed
    (any of these statuses); ``None`` does not filter. Ranges are [after, before)."""

    statuses: tuple[JobStatus, ...] | None = None
    types: tuple[str, ...] | None = None
    queues: tuple[str, ...] | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    finished_after: datetime | None = None
    finished_before: datetime | None = None

    @property
    def filters_after_walk(self) -> bool:
        """Whether some condition applies to the rows the walk yields (list_jobs's outer
        WHERE): without one, every row walked is on the page, so a short page is the end."""
        return any(
            value is not None
            for value in (
                self.statuses,
                self.types,
                self.queues,
                self.created_after,
                self.created_before,
                self.finished_after,
                self.finished_before,
            )
        )

    def id_bounds(self) -> tuple[uuid.UUID | None, uuid.UUID | None]:
        """[floor, ceiling) of the ids the filter can match, from the instant in a UUIDv7:
        created_after gives the floor; created_before and finished_before the ceiling (made
        before it was finished). Widened by :data:`ID_TIME_MARGIN`."""
        floor = (
            None
            if self.created_after is None
            else uuid7_floor(max(self.created_after - ID_TIME_MARGIN, FILTER_TIME_MIN))
        )
        ends = [t for t in (self.created_before, self.finished_before) if t is not None]
        ceiling = (
            None if not ends else uuid7_floor(min(min(ends) + ID_TIME_MARGIN, FILTER_TIME_MAX))
        )
        return floor, ceiling


@dataclass(frozen=True, slots=True)
class RecentJobs:
    """One queue's jobs created within a window, and how many of them completed or failed."""

    queue: str
    created: int
    completed: int
    failed: int


@dataclass(frozen=True, slots=True)
class JobPage:
    jobs: list[JobSummary]
    next_cursor: str | None  # None: this was the last page


def _values(items: Sequence[str] | None) -> list[str] | None:
    return None if items is None else list(items)


class JobListing:
    """Filtered pages of jobs, and which jobs have finished. One per process, on its pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def page(
        self,
        where: JobFilter,
        *,
        after: uuid.UUID | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
        scan_budget: int = SCAN_BUDGET,
    ) -> JobPage:
        """Up to ``limit`` jobs matching ``where``, newest id first, after the id ``after``
        (None: from the newest), having read at most ``scan_budget`` rows."""
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be 1..{MAX_PAGE_SIZE}, got {limit}")
        scan_budget = max(scan_budget, limit + 1)
        floor, ceiling = where.id_bounds()
        statuses = None if where.statuses is None else [s.value for s in where.statuses]
        # Only failed or cancelled: walk their own index instead of the primary key.
        failed_or_cancelled = where.statuses is not None and set(where.statuses) <= _IN_OWN_INDEX
        end: uuid.UUID | None = None
        async with (
            translate_connection_errors(),
            self._pool.acquire() as conn,
            # One snapshot for the page and the end of its walk (list_jobs_scan_end).
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            # See listing.sql: one plan per filter shape, made for its actual values.
            await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            walk = {
                "after": after,
                "failed_or_cancelled": failed_or_cancelled,
                "id_floor": floor,
                "id_ceiling": ceiling,
                "scan_budget": scan_budget,
            }
            rows = await Q_LIST_JOBS.fetch(
                conn,
                **walk,
                statuses=statuses,
                types=_values(where.types),
                queues=_values(where.queues),
                created_after=where.created_after,
                created_before=where.created_before,
                finished_after=where.finished_after,
                finished_before=where.finished_before,
                limit=limit + 1,  # one more than the page shows: whether another follows
            )
            if len(rows) <= limit and where.filters_after_walk:
                # Short: the walk ended, or it ran out of budget before the page was full.
                end = await Q_LIST_JOBS_SCAN_END.fetchval(conn, **walk)
        jobs = [
            JobSummary(
                id=r["id"],
                type=r["type"],
                queue=r["queue"],
                status=STATUS_BY_VALUE[r["status"]],
                priority=r["priority"],
                attempts=r["attempts"],
                max_attempts=r["max_attempts"],
                created_at=r["created_at"],
                scheduled_at=r["scheduled_at"],
                started_at=r["started_at"],
                finished_at=r["finished_at"],
                error_message=r["error_message"],
            )
            for r in rows[:limit]
        ]
        if len(rows) > limit:
            return JobPage(jobs, encode_cursor(jobs[-1].id))
        return JobPage(jobs, None if end is None else encode_cursor(end))

    async def finished_among(self, job_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """The ids in ``job_ids`` whose job has finished (completed, failed or cancelled)."""
        if not job_ids:
            return set()
        async with translate_connection_errors():
            rows = await Q_FINISHED_AMONG.fetch(self._pool, job_ids=list(job_ids))
        return {r["id"] for r in rows}

    async def recent_by_queue(
        self, since: datetime, *, max_rows: int = RECENT_MAX_ROWS
    ) -> tuple[list[RecentJobs], bool]:
        """Per queue, the jobs created since ``since`` (by their UUIDv7 ids) and how many of
        them completed or failed; and whether ``max_rows`` cut the read short (the counts are
        then lower bounds)."""
        async with translate_connection_errors():
            rows = await Q_RECENT_BY_QUEUE.fetch(
                self._pool, id_floor=uuid7_floor(since), max_rows=max_rows
            )
        recent = [
            RecentJobs(
                queue=r["queue"], created=r["created"], completed=r["completed"], failed=r["failed"]
            )
            for r in rows
        ]
        return recent, sum(r.created for r in recent) >= max_rows
