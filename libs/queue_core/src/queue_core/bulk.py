"""Cancelling or retrying every job a filter matches, in batches (POST /v1/jobs/cancel, /retry).

The jobs are found as a listing finds them (``queue_core.listing``: the same filter, the same
bounded walk) and changed by the same statements as a single cancel or retry
(``queries.sql``: ``cancel``, ``retry``), a batch of :data:`BATCH_SIZE` ids each: one rule per
transition, in one place. Each batch is its own short transaction, so a bulk action over
thousands of jobs never holds their locks together, and workers keep claiming and finishing
meanwhile. A job whose status changed between being listed and its batch (a pending job
claimed meanwhile) is handled by that statement's own check, and counted only if changed.
The ``limit`` newest matching jobs are listed first and changed oldest first (see ``_act``).
"""

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Final
from uuid import UUID

from queue_core.listing import JobFilter, JobListing, decode_cursor
from queue_core.queue import Queue
from queue_core.states import JobStatus

BATCH_SIZE: Final = 500
MAX_BULK_LIMIT: Final = 10_000

CANCELLABLE: Final = (JobStatus.PENDING, JobStatus.RUNNING)
RETRYABLE: Final = (JobStatus.FAILED, JobStatus.CANCELLED)


async def cancel_matching(
    queue: Queue, listing: JobListing, where: JobFilter, *, limit: int
) -> int:
    """Cancel (pending) or ask to stop (running) up to ``limit`` jobs matching ``where``;
    returns how many."""
    return await _act(listing, where, CANCELLABLE, queue.cancel_many, limit)


async def retry_matching(queue: Queue, listing: JobListing, where: JobFilter, *, limit: int) -> int:
    """Put up to ``limit`` failed or cancelled jobs matching ``where`` back to pending; returns
    how many."""
    return await _act(listing, where, RETRYABLE, queue.retry_many, limit)


async def _act(
    listing: JobListing,
    where: JobFilter,
    allowed: Sequence[JobStatus],
    action: Callable[[Sequence[UUID]], Awaitable[int]],
    limit: int,
) -> int:
    if not 1 <= limit <= MAX_BULK_LIMIT:
        raise ValueError(f"limit must be 1..{MAX_BULK_LIMIT}, got {limit}")
    statuses = tuple(s for s in (where.statuses or allowed) if s in allowed)
    if not statuses:
        return 0  # e.g. retrying completed jobs: none can be
    where = replace(where, statuses=statuses)
    # The newest ``limit`` first, as the listing walks them; then changed oldest first: a job is
    # older than its dependants (ids are UUIDv7), so a dependency retried in an earlier batch
    # is pending again when a later batch's retry of its dependant looks at it (queries.sql:
    # retry leaves a job that waits for one still failed as it is).
    ids: list[UUID] = []
    after: UUID | None = None
    while len(ids) < limit:
        page = await listing.page(where, after=after, limit=min(BATCH_SIZE, limit - len(ids)))
        ids.extend(job.id for job in page.jobs)
        if page.next_cursor is None:
            break
        after = decode_cursor(page.next_cursor)
    ids.reverse()
    done = 0
    for start in range(0, len(ids), BATCH_SIZE):
        done += await action(ids[start : start + BATCH_SIZE])
    return done
