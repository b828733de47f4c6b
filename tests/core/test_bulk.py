"""queue_core.bulk: one bulk action walks a bounded number of rows, says where it stopped, and
a cursor goes on from there; a dense match still reaches its limit in one action."""

import uuid

import asyncpg
import pytest

from queue_core.bulk import (
    MAX_BULK_LIMIT,
    BulkStep,
    cancel_matching_step,
    retry_matching_step,
)
from queue_core.jobs import NewJob
from queue_core.listing import JobFilter, JobListing, decode_cursor, encode_cursor
from queue_core.queue import Queue
from queue_core.states import JobStatus


async def _add(queue: Queue, count: int, job_type: str = "noop") -> list[uuid.UUID]:
    return await queue.enqueue_many([NewJob(type=job_type, payload={"i": i}) for i in range(count)])


async def _fill(pool: asyncpg.Pool, count: int, status: str = "completed") -> None:
    """``count`` jobs in one statement: faster than enqueueing them, for tables the walk must
    not read through."""
    await pool.execute(
        "INSERT INTO jobs (id, type, payload, status, attempts, started_at, finished_at)"
        " SELECT gen_random_uuid(), 'noop', '{}'::jsonb, $2::text,"
        "        CASE WHEN $2::text = 'pending' THEN 0 ELSE 1 END,"
        "        CASE WHEN $2::text = 'pending' THEN NULL ELSE now() END,"
        "        CASE WHEN $2::text = 'pending' THEN NULL ELSE now() END"
        " FROM generate_series(1, $1)",
        count,
        status,
    )


async def _id_at(pool: asyncpg.Pool, position: int) -> uuid.UUID:
    """The ``position``-th id, newest first (1: the newest): where a walk of that many rows
    from the start ends."""
    found: uuid.UUID = await pool.fetchval(
        "SELECT id FROM jobs ORDER BY id DESC OFFSET $1 - 1 LIMIT 1", position
    )
    return found


async def test_a_filter_matching_nothing_stops_at_the_bound_and_its_cursor_goes_on(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    await _fill(pool, 250)
    listing, nothing = JobListing(pool), JobFilter(types=("nope",))

    async def step(after: uuid.UUID | None) -> BulkStep:
        # Pages of 30 within 100 rows: 30, 30, 30, then the 10 left.
        return await cancel_matching_step(
            queue, listing, nothing, limit=1, after=after, max_scan=100, scan_budget=30
        )

    first = await step(None)
    assert first == BulkStep(0, encode_cursor(await _id_at(pool, 100)), bounded=True)
    assert first.next_cursor is not None
    second = await step(decode_cursor(first.next_cursor))
    assert second == BulkStep(0, encode_cursor(await _id_at(pool, 200)), bounded=True)
    assert second.next_cursor is not None
    assert await step(decode_cursor(second.next_cursor)) == BulkStep(0, None)  # the end


async def test_a_rare_match_past_the_bound_is_reached_by_following_the_cursor(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    rare = await _add(queue, 3, "rare")  # the oldest: past two bounds of 100 rows
    await _add(queue, 250)
    listing, rare_only = JobListing(pool), JobFilter(types=("rare",))

    steps: list[BulkStep] = []
    after = None
    while True:
        steps.append(
            await cancel_matching_step(
                queue, listing, rare_only, limit=10, after=after, max_scan=100, scan_budget=40
            )
        )
        if steps[-1].next_cursor is None:
            break
        after = decode_cursor(steps[-1].next_cursor)

    assert [s.affected for s in steps] == [0, 0, 3]
    cancelled = await pool.fetch("SELECT id FROM jobs WHERE status = 'cancelled'")
    assert sorted(r["id"] for r in cancelled) == sorted(rare)


async def test_an_action_that_reaches_its_limit_answers_a_cursor_to_the_older_jobs(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    ids = await _add(queue, 5)  # oldest first
    listing, pending = JobListing(pool), JobFilter()

    first = await cancel_matching_step(queue, listing, pending, limit=2)
    assert first == BulkStep(2, encode_cursor(ids[3]))  # the last one it changed
    assert first.next_cursor is not None
    second = await cancel_matching_step(
        queue, listing, pending, limit=2, after=decode_cursor(first.next_cursor)
    )
    assert second == BulkStep(2, encode_cursor(ids[1]))
    assert second.next_cursor is not None
    third = await cancel_matching_step(
        queue, listing, pending, limit=2, after=decode_cursor(second.next_cursor)
    )
    assert third == BulkStep(1, None)


async def test_the_largest_limit_is_reached_in_one_action_when_every_job_walked_matches(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    await _fill(pool, MAX_BULK_LIMIT + 1, "pending")
    listing = JobListing(pool)

    step = await cancel_matching_step(queue, listing, JobFilter(), limit=MAX_BULK_LIMIT)

    assert step == BulkStep(MAX_BULK_LIMIT, encode_cursor(await _id_at(pool, MAX_BULK_LIMIT)))
    assert step.next_cursor is not None
    rest = await cancel_matching_step(
        queue, listing, JobFilter(), limit=MAX_BULK_LIMIT, after=decode_cursor(step.next_cursor)
    )
    assert rest == BulkStep(1, None)


async def test_a_retry_of_statuses_it_cannot_change_walks_nothing_and_says_it_is_done(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    await _fill(pool, 10)
    completed = JobFilter(statuses=(JobStatus.COMPLETED,))

    assert await retry_matching_step(queue, JobListing(pool), completed, limit=5) == BulkStep(
        0, None
    )


@pytest.mark.parametrize(
    ("limit", "max_scan", "scan_budget"),
    [(0, 100, 100), (MAX_BULK_LIMIT + 1, 100, 100), (1, 1, 100), (1, 100, 1)],
)
async def test_bounds_outside_their_range_are_refused(
    queue: Queue, pool: asyncpg.Pool, limit: int, max_scan: int, scan_budget: int
) -> None:
    with pytest.raises(ValueError, match="must be"):
        await cancel_matching_step(
            queue,
            JobListing(pool),
            JobFilter(),
            limit=limit,
            max_scan=max_scan,
            scan_budget=scan_budget,
        )


async def test_an_action_at_its_limit_is_not_bounded_even_when_it_changed_nothing(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    # The newest cancelled job cannot be retried (a pending job holds its unique key): the
    # action stops at its limit of 1 having changed none, with a cursor; only the bound being
    # reached is "bounded" (the console says the walk was cut short only then).
    older, newer = await _add(queue, 2)
    await pool.execute("UPDATE jobs SET unique_key = 'k' WHERE id = $1", newer)
    await pool.execute(
        "UPDATE jobs SET status = 'cancelled', finished_at = now() WHERE id = ANY($1::uuid[])",
        [older, newer],
    )
    await queue.enqueue(NewJob(type="noop", payload={"i": 9}, unique_key="k"))

    step = await retry_matching_step(queue, JobListing(pool), JobFilter(), limit=1)

    assert step == BulkStep(0, encode_cursor(newer), bounded=False)
