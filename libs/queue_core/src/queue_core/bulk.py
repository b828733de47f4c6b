"""Cancelling or retrying every job a filter matches, in batches (POST /v1/jobs/cancel, /retry).

The jobs are found as a listing finds them (``queue_core.listing``: the same filter, the same
bounded walk) and changed by the same statements as a single cancel or retry
(``queries.sql``: ``cancel``, ``retry``), a batch of :data:`BATCH_SIZE` ids each: one rule per
transition, in one place. Each batch is its own short transaction, so a bulk action over
thousands of jobs never holds their locks together, and workers keep claiming and finishing
meanwhile. A job whose status changed between being listed and its batch (a pending job
claimed meanwhile) is handled by that statement's own check, and counted only if changed.
The ``limit`` newest matching jobs are listed first and changed oldest first (see ``_act``).

One action walks at most :data:`MAX_BULK_SCAN` rows, whatever the filter: like a listing's page,
it may stop before its limit, and then answers a cursor that goes on where its walk stopped
(:class:`BulkStep`), with the listing's convention: only an answer without ``next_cursor`` has
walked to the end of the jobs that match.
"""

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Final
from uuid import UUID

from queue_core.listing import MAX_PAGE_SIZE, SCAN_BUDGET, JobFilter, JobListing, decode_cursor
from queue_core.queue import Queue
from queue_core.states import JobStatus

BATCH_SIZE: Final = 500
MAX_BULK_LIMIT: Final = 10_000
# Rows one action may walk to find its jobs, in pages of at most SCAN_BUDGET each: 10 pages,
# 200,000 rows, about 0.3 s of database time at 10 million jobs (10 of the listing's 30 ms
# pages). Ten full pages of MAX_PAGE_SIZE are MAX_BULK_LIMIT jobs, so any limit is reached in
# one action while one walked job in 20 matches, as before this bound; a rarer match (or none:
# a queue or type that has no job left) stops here with a cursor, instead of reading the whole
# table (a key restricted to queues always filters by queue, and neither queue nor type is
# indexed).
MAX_BULK_SCAN: Final = MAX_BULK_LIMIT // MAX_PAGE_SIZE * SCAN_BUDGET

# The fewest rows a page can walk: it reads one more than it shows (listing.JobListing.page).
_MIN_SCAN: Final = 2

CANCELLABLE: Final = (JobStatus.PENDING, JobStatus.RUNNING)
RETRYABLE: Final = (JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass(frozen=True, slots=True)
class BulkStep:
    """What one bulk action did, and where the next one goes on."""

    affected: int  # jobs changed
    # As a listing page's: the walk stopped at its limit or at MAX_BULK_SCAN, and this
    # continues it (older jobs, the same filter). None: every matching job was walked.
    next_cursor: str | None
    # The walk stopped at MAX_BULK_SCAN with fewer matching jobs than its limit: those older
    # than next_cursor are still unread (at its limit it stopped because it had enough).
    bounded: bool = False


async def cancel_matching_step(  # noqa: PLR0913 - the walk's position and bounds, by name
    queue: Queue,
    listing: JobListing,
    where: JobFilter,
    *,
    limit: int,
    after: UUID | None = None,
    max_scan: int = MAX_BULK_SCAN,
    scan_budget: int = SCAN_BUDGET,
) -> BulkStep:
    """Cancel (pending) or ask to stop (running) up to ``limit`` jobs matching ``where``, older
    than the id ``after`` (None: from the newest), having walked at most ``max_scan`` rows in
    pages of at most ``scan_budget``."""
    return await _act(
        listing,
        where,
        CANCELLABLE,
        queue.cancel_many,
        limit=limit,
        after=after,
        max_scan=max_scan,
        scan_budget=scan_budget,
    )


async def retry_matching_step(  # noqa: PLR0913 - the walk's position and bounds, by name
    queue: Queue,
    listing: JobListing,
    where: JobFilter,
    *,
    limit: int,
    after: UUID | None = None,
    max_scan: int = MAX_BULK_SCAN,
    scan_budget: int = SCAN_BUDGET,
) -> BulkStep:
    """Put up to ``limit`` failed or cancelled jobs matching ``where`` back to pending, older
    than the id ``after`` (None: from the newest), having walked at most ``max_scan`` rows in
    pages of at most ``scan_budget``."""
    return await _act(
        listing,
        where,
        RETRYABLE,
        queue.retry_many,
        limit=limit,
        after=after,
        max_scan=max_scan,
        scan_budget=scan_budget,
    )


async def _act(  # noqa: PLR0913 - the one body of both actions
    listing: JobListing,
    where: JobFilter,
    allowed: Sequence[JobStatus],
    action: Callable[[Sequence[UUID]], Awaitable[int]],
    *,
    limit: int,
    after: UUID | None,
    max_scan: int,
    scan_budget: int,
) -> BulkStep:
    if not 1 <= limit <= MAX_BULK_LIMIT:
        raise ValueError(f"limit must be 1..{MAX_BULK_LIMIT}, got {limit}")
    if min(max_scan, scan_budget) < _MIN_SCAN:
        raise ValueError(f"max_scan and scan_budget must be {_MIN_SCAN} or more")
    statuses = tuple(s for s in (where.statuses or allowed) if s in allowed)
    if not statuses:
        return BulkStep(0, None)  # e.g. retrying completed jobs: none can be
    where = replace(where, statuses=statuses)
    # The newest ``limit`` first, as the listing walks them; then changed oldest first: a job is
    # older than its dependants (ids are UUIDv7), so a dependency retried in an earlier batch
    # is pending again when a later batch's retry of its dependant looks at it (queries.sql:
    # retry leaves a job that waits for one still failed as it is).
    ids: list[UUID] = []
    walked = 0  # rows the pages may have read: each at most its scan budget
    while True:
        budget = min(scan_budget, max_scan - walked)
        # A page reads at most max(budget, its limit + 1) rows: its limit stays below budget.
        size = min(MAX_PAGE_SIZE, limit - len(ids), budget - 1)
        page = await listing.page(where, after=after, limit=size, scan_budget=budget)
        walked += budget
        ids.extend(job.id for job in page.jobs)
        if page.next_cursor is None or len(ids) >= limit or max_scan - walked < _MIN_SCAN:
            break
        after = decode_cursor(page.next_cursor)
    ids.reverse()
    done = 0
    for start in range(0, len(ids), BATCH_SIZE):
        done += await action(ids[start : start + BATCH_SIZE])
    return BulkStep(
        done, page.next_cursor, bounded=page.next_cursor is not None and len(ids) < limit
    )
