"""queue_core.listing: the scan budget that bounds every page, cursors, and the id range a
created_at filter is turned into."""

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from uuid_utils.compat import uuid7

from queue_core.jobs import NewJob
from queue_core.listing import (
    ID_TIME_MARGIN,
    InvalidCursorError,
    JobFilter,
    JobListing,
    decode_cursor,
    encode_cursor,
    uuid7_floor,
)
from queue_core.queue import Queue
from queue_core.states import JobStatus


async def _add(queue: Queue, count: int, job_type: str = "noop") -> list[uuid.UUID]:
    return await queue.enqueue_many([NewJob(type=job_type, payload={"i": i}) for i in range(count)])


async def _walk(
    listing: JobListing, where: JobFilter, *, limit: int, scan_budget: int
) -> list[list[uuid.UUID]]:
    pages: list[list[uuid.UUID]] = []
    after = None
    while True:
        page = await listing.page(where, after=after, limit=limit, scan_budget=scan_budget)
        pages.append([job.id for job in page.jobs])
        if page.next_cursor is None:
            return pages
        after = decode_cursor(page.next_cursor)


async def test_a_rare_match_is_reached_through_short_pages_each_reading_at_most_the_budget(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    rare = await _add(queue, 5, "rare")  # the oldest
    await _add(queue, 295)
    listing = JobListing(pool)

    pages = await _walk(listing, JobFilter(types=("rare",)), limit=10, scan_budget=100)

    assert pages[0] == []  # the newest 100 jobs hold none: an empty page, and a cursor
    assert [job for page in pages for job in page] == sorted(rare, reverse=True)
    assert len(pages) <= 4  # 300 rows, 100 a page, and perhaps one empty page at the end


async def test_failed_jobs_are_walked_through_their_own_index_not_every_job(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    failed = await _add(queue, 3)
    await _add(queue, 50)
    await pool.execute(
        "UPDATE jobs SET status = 'failed', attempts = 1, finished_at = now()"
        " WHERE id = ANY($1::uuid[])",
        failed,
    )
    listing = JobListing(pool)

    pages = await _walk(listing, JobFilter(statuses=(JobStatus.FAILED,)), limit=10, scan_budget=20)

    assert pages == [sorted(failed, reverse=True)]


async def test_a_full_page_continues_after_its_last_job_whatever_the_budget(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    ids = await _add(queue, 25)
    listing = JobListing(pool)

    pages = await _walk(listing, JobFilter(types=("noop",)), limit=10, scan_budget=11)

    assert [job for page in pages for job in page] == sorted(ids, reverse=True)
    assert [len(page) for page in pages[:3]] == [10, 10, 5]


def test_a_cursor_round_trips_and_is_22_url_safe_characters() -> None:
    job_id = uuid.uuid4()
    cursor = encode_cursor(job_id)

    assert len(cursor) == 22
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_cursor(cursor) == job_id


@pytest.mark.parametrize(
    "cursor", ["", "x", "A" * 22 + "=", "AAAAAAAAAAAAAAAAAAAAAB", "A" * 21 + "*"]
)
def test_a_cursor_not_made_here_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursorError):
        decode_cursor(cursor)


def test_a_uuid7_made_at_an_instant_is_not_below_that_instants_floor() -> None:
    before = datetime.now(UTC)
    made = uuid.UUID(str(uuid7()))

    assert uuid7_floor(before) <= made < uuid7_floor(before + timedelta(seconds=5))


def test_created_and_finished_bounds_become_an_id_range_widened_by_the_margin() -> None:
    t = datetime(2026, 12, 4, 10, tzinfo=UTC)

    floor, ceiling = JobFilter(created_after=t, finished_before=t + timedelta(days=1)).id_bounds()

    assert floor == uuid7_floor(t - ID_TIME_MARGIN)
    assert ceiling == uuid7_floor(t + timedelta(days=1) + ID_TIME_MARGIN)
    assert JobFilter(finished_after=t).id_bounds() == (None, None)  # may have been made long ago
