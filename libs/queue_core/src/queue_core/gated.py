"""Enqueueing jobs that carry limits per key (``concurrency_key``) or dependencies
(``depends_on``): the jobs, their dependency edges and their keys' rows, in the caller's
transaction.

Limits per key are enforced by the claim (``sql/queries.sql``: ``claim_keyed``): keyed claims
take turns across the fleet, and each starts at most what the key's limits in
``concurrency_keys`` leave of its running jobs (holding, and rewriting, the row of a key with a
rate, whose tat it moves on). Here the key's row is made, or its limits replaced by the latest
enqueue's (a limit left out keeps the key's).

A job with dependencies is inserted waiting for all of them (``waiting_for``); its parents are
locked and flagged (``lock_parents``), which is what serialises it with their outcomes; then the
parents that already have one are settled at once (``queue_core.dependencies``): a completed
parent counts down, a failed one fails the new job too. Cycles cannot be made: a job can only
depend on jobs that exist, or on earlier jobs of its own batch.

Statement order is lock order: new rows first (nothing else can hold them), then the parents
(id order) and the settling of those that have an outcome, and the key rows last (key order;
the claim takes them SKIP LOCKED, never waiting): nothing waits for a job's row while holding
a key's.
"""

import math
from collections.abc import Sequence
from typing import Final
from uuid import UUID

from uuid_utils.compat import uuid7

from queue_core.dependencies import settle
from queue_core.errors import InvalidJobError, UnknownDependencyError
from queue_core.jobs import Enqueued, EnqueueOutcome, NewJob
from queue_core.keyed import Db, enqueue_keyed, is_keyed, job_columns
from queue_core.limits import (
    MAX_CONCURRENCY_LIMIT,
    MAX_DEPENDENCIES,
    MAX_KEY_RATE_BURST,
    MAX_KEY_RATE_PER_S,
    MIN_RATE_PER_S,
)
from queue_core.sql import GATED_QUERIES, QUERIES
from queue_core.states import FINAL_STATUSES

Q_ENQUEUE_MANY: Final = QUERIES["enqueue_many"]
Q_ENQUEUE_GATED: Final = GATED_QUERIES["enqueue_gated"]
Q_INSERT_CONCURRENCY_KEYS: Final = GATED_QUERIES["insert_concurrency_keys"]
Q_UPDATE_CONCURRENCY_KEYS: Final = GATED_QUERIES["update_concurrency_keys"]
Q_LOCK_PARENTS: Final = GATED_QUERIES["lock_parents"]
Q_INSERT_DEPENDENCIES: Final = GATED_QUERIES["insert_dependencies"]

_FINAL_VALUES: Final = frozenset(s.value for s in FINAL_STATUSES)


def is_gated(job: NewJob) -> bool:
    """Whether ``job`` has a concurrency key, a rate limit or dependencies."""
    return job.concurrency_key is not None or bool(job.depends_on)


def default_burst(rate_limit: float) -> int:
    """A rate limit's burst when none is given: one second's worth, at least 1."""
    return min(max(1, math.ceil(rate_limit)), MAX_KEY_RATE_BURST)


def _check(jobs: Sequence[NewJob]) -> None:
    for index, job in enumerate(jobs):
        if len(job.depends_on) > MAX_DEPENDENCIES:
            raise InvalidJobError(f"a job may depend on at most {MAX_DEPENDENCIES} jobs")
        for ref in job.depends_on:
            if isinstance(ref, bool) or not isinstance(ref, UUID | int):
                raise InvalidJobError(
                    f"depends_on holds a {type(ref).__name__}: only a job id (a UUID) or the "
                    "index of an earlier job of the batch"
                )
            if isinstance(ref, int) and not 0 <= ref < index:
                raise InvalidJobError(
                    f"job {index} of the batch depends on job {ref}: only an earlier job of "
                    "the batch can be named by its index"
                )
        has_limit = job.concurrency_limit is not None or job.rate_limit is not None
        if has_limit and job.concurrency_key is None:
            raise InvalidJobError("concurrency_limit and rate_limit need a concurrency_key")
        if job.rate_burst is not None and job.rate_limit is None:
            raise InvalidJobError("rate_burst needs a rate_limit")
        _check_limits(job)


def _check_limits(job: NewJob) -> None:
    """The bounds the concurrency_keys table holds (limits_bounded), checked before any
    statement: a NaN or infinite rate raised a bare ValueError or OverflowError from the middle
    of the enqueue, and the others failed a statement of the caller's transaction."""
    limit, rate, burst = job.concurrency_limit, job.rate_limit, job.rate_burst
    if limit is not None and not (isinstance(limit, int) and 1 <= limit <= MAX_CONCURRENCY_LIMIT):
        raise InvalidJobError(
            f"concurrency_limit must be an integer from 1 to {MAX_CONCURRENCY_LIMIT}"
        )
    if rate is not None and not (
        isinstance(rate, int | float) and MIN_RATE_PER_S <= rate <= MAX_KEY_RATE_PER_S
    ):  # also refuses NaN
        raise InvalidJobError(
            f"rate_limit must be from {MIN_RATE_PER_S:.3g} (one a day) to {MAX_KEY_RATE_PER_S:g}"
        )
    if burst is not None and not (isinstance(burst, int) and 1 <= burst <= MAX_KEY_RATE_BURST):
        raise InvalidJobError(f"rate_burst must be an integer from 1 to {MAX_KEY_RATE_BURST}")


def _parents(job: NewJob, ids: Sequence[UUID | None]) -> list[UUID]:
    """The ids ``job`` depends on, an index resolved to its batch item's id, in order, once."""
    resolved = [ref if isinstance(ref, UUID) else ids[ref] for ref in job.depends_on]
    return list(dict.fromkeys(r for r in resolved if r is not None))


async def enqueue_gated_all(db: Db, jobs: Sequence[NewJob]) -> list[Enqueued]:
    """Enqueue ``jobs`` (any mix of plain, keyed and gated ones) on ``db``, one connection
    inside a transaction: all or none. Raises :class:`UnknownDependencyError` when a job
    depends on one that does not exist, :class:`InvalidJobError` for a bad reference."""
    _check(jobs)
    # Ids first: jobs with no unique or idempotency key get theirs now; keyed ones in order
    # (a later job may name an earlier one by index, and a keyed job may be an existing one).
    ids: list[UUID | None] = [None if is_keyed(job) else uuid7() for job in jobs]
    results: list[Enqueued | None] = [None] * len(jobs)
    for index, job in enumerate(jobs):
        if is_keyed(job):
            waiting = len(_parents(job, ids))
            enqueued = await enqueue_keyed(db, job, waiting_for=waiting)
            ids[index] = enqueued.id
            results[index] = enqueued
    await _insert_unkeyed(db, jobs, ids)
    for index, result in enumerate(results):
        if result is None:
            results[index] = Enqueued(_known(ids[index]), EnqueueOutcome.CREATED)
    done = [r for r in results if r is not None]
    created = [
        (index, job)
        for index, job in enumerate(jobs)
        if done[index].outcome is EnqueueOutcome.CREATED
    ]
    await _link_parents(db, [(_known(ids[i]), _parents(job, ids)) for i, job in created])
    await _upsert_keys(db, [job for _, job in created])
    return done


def _known(job_id: UUID | None) -> UUID:
    if job_id is None:  # every id is set before it is read: enqueue_gated_all's order
        raise AssertionError("job id read before it was assigned")
    return job_id


async def _insert_unkeyed(db: Db, jobs: Sequence[NewJob], ids: Sequence[UUID | None]) -> None:
    plain = [(i, j) for i, j in enumerate(jobs) if not is_keyed(j) and not is_gated(j)]
    gated = [(i, j) for i, j in enumerate(jobs) if not is_keyed(j) and is_gated(j)]
    if plain:
        columns = job_columns([j for _, j in plain], [ids[i] for i, _ in plain])
        await Q_ENQUEUE_MANY.execute(db, **columns)
    if gated:
        columns = job_columns([j for _, j in gated], [ids[i] for i, _ in gated])
        await Q_ENQUEUE_GATED.execute(
            db,
            **columns,
            concurrency_key=[j.concurrency_key for _, j in gated],
            waiting_for=[len(_parents(j, ids)) for _, j in gated],
        )


async def _link_parents(db: Db, links: Sequence[tuple[UUID, list[UUID]]]) -> None:
    """Lock and flag the parents, check they exist, insert the edges, settle the parents that
    already have an outcome."""
    wanted = sorted({parent for _, parents in links for parent in parents})
    if not wanted:
        return
    found = {row["id"]: row["status"] for row in await Q_LOCK_PARENTS.fetch(db, parent_ids=wanted)}
    missing = [parent for parent in wanted if parent not in found]
    if missing:
        raise UnknownDependencyError(missing)
    edges = [(child, parent) for child, parents in links for parent in parents]
    await Q_INSERT_DEPENDENCIES.execute(
        db, job_id=[e[0] for e in edges], depends_on=[e[1] for e in edges]
    )
    # In the enqueue's transaction, every level: only the batch's own jobs can be below.
    left = [parent for parent, status in found.items() if status in _FINAL_VALUES]
    while left:
        left = await settle(db, left)


async def _upsert_keys(db: Db, jobs: Sequence[NewJob]) -> None:
    """Each key's row, with the limits of its latest job in ``jobs`` (a limit left out keeps
    the one before it)."""
    merged: dict[str, tuple[int | None, float | None, int | None]] = {}
    for job in jobs:
        if job.concurrency_key is None:
            continue
        limit, rate, burst = merged.get(job.concurrency_key, (None, None, None))
        if job.concurrency_limit is not None:
            limit = job.concurrency_limit
        if job.rate_limit is not None:
            rate = job.rate_limit
            burst = job.rate_burst if job.rate_burst is not None else default_burst(rate)
        merged[job.concurrency_key] = (limit, rate, burst)
    if not merged:
        return
    keys = sorted(merged)
    columns = {
        "key": keys,
        "concurrency_limit": [merged[k][0] for k in keys],
        "rate_per_s": [merged[k][1] for k in keys],
        "rate_burst": [merged[k][2] for k in keys],
    }
    # Two statements: neither locks the row of a key whose limits stay as they were.
    await Q_INSERT_CONCURRENCY_KEYS.execute(db, **columns)
    await Q_UPDATE_CONCURRENCY_KEYS.execute(db, **columns)
