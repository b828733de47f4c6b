"""Retention's statements on a real database (queue_core.retention): old finished rows written
straight into the table are deleted per status; pending and running rows never are; batches are
small; a key that still holds keeps its job; one replica at a time works; rows whose ids are not
UUIDv7 (the Go service's) are deleted too, without reading the history the queue made."""

import random
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from core.retention_rows import insert_job, job_ids
from queue_core.queue import Queue
from queue_core.retention import (
    CLOCK_SLACK_S,
    Q_DELETE_NOT_UUID7_BATCH,
    RETAINED_STATUSES,
    RETENTION_LOCK_KEY,
    Retention,
)
from queue_core.sql import RETENTION_QUERIES
from queue_core.states import JobStatus

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
RETENTION_S = {
    JobStatus.COMPLETED: DAY.total_seconds(),
    JobStatus.FAILED: 3 * DAY.total_seconds(),
    JobStatus.CANCELLED: 2 * DAY.total_seconds(),
}


async def test_each_final_status_is_deleted_past_its_own_retention(pool: asyncpg.Pool) -> None:
    gone = {
        await insert_job(pool, JobStatus.COMPLETED, created_ago=2 * DAY),
        await insert_job(pool, JobStatus.COMPLETED, created_ago=400 * DAY),
        await insert_job(pool, JobStatus.FAILED, created_ago=4 * DAY),
        await insert_job(pool, JobStatus.CANCELLED, created_ago=3 * DAY),
        # Created long ago, finished just past the retention.
        await insert_job(pool, JobStatus.COMPLETED, created_ago=90 * DAY, finished_ago=DAY + HOUR),
    }
    kept = {
        await insert_job(pool, JobStatus.COMPLETED, created_ago=12 * HOUR),
        await insert_job(pool, JobStatus.FAILED, created_ago=2 * DAY),  # failed: 3 days
        await insert_job(pool, JobStatus.CANCELLED, created_ago=DAY + HOUR),  # cancelled: 2
        # Created long ago, finished recently (a retry, a late schedule): its age counts from
        # finished_at.
        await insert_job(pool, JobStatus.COMPLETED, created_ago=90 * DAY, finished_ago=HOUR),
        # Never deleted, however old.
        await insert_job(pool, JobStatus.PENDING, created_ago=400 * DAY),
        await insert_job(pool, JobStatus.RUNNING, created_ago=400 * DAY),
    }

    result = await Retention(pool, RETENTION_S).run_round()

    assert result.locked
    assert await job_ids(pool) == kept
    assert result.deleted == {JobStatus.COMPLETED: 3, JobStatus.FAILED: 1, JobStatus.CANCELLED: 1}
    assert not gone & await job_ids(pool)
    # The oldest left of each status, by creation: the completed one created 90 days ago.
    assert result.oldest_s[JobStatus.COMPLETED] == pytest.approx(HOUR.total_seconds(), abs=60)
    assert result.oldest_s[JobStatus.FAILED] == pytest.approx(2 * DAY.total_seconds(), abs=60)
    assert result.oldest_s[JobStatus.CANCELLED] == pytest.approx(
        (DAY + HOUR).total_seconds(), abs=60
    )


async def test_a_status_without_retention_is_kept_for_good(pool: asyncpg.Pool) -> None:
    completed = await insert_job(pool, JobStatus.COMPLETED, created_ago=400 * DAY)
    failed = await insert_job(pool, JobStatus.FAILED, created_ago=400 * DAY)
    await insert_job(pool, JobStatus.CANCELLED, created_ago=400 * DAY)

    retention = Retention(
        pool,
        {
            JobStatus.COMPLETED: None,
            JobStatus.FAILED: None,
            JobStatus.CANCELLED: DAY.total_seconds(),
        },
    )
    result = await retention.run_round()

    assert await job_ids(pool) == {completed, failed}
    assert result.deleted == {JobStatus.CANCELLED: 1}


async def test_deletes_in_batches_of_the_given_size(pool: asyncpg.Pool) -> None:
    for i in range(35):
        await insert_job(pool, JobStatus.COMPLETED, created_ago=2 * DAY + i * HOUR)
    kept = await insert_job(pool, JobStatus.COMPLETED, created_ago=HOUR)

    result = await Retention(pool, RETENTION_S, batch=10).run_round()

    assert result.deleted[JobStatus.COMPLETED] == 35
    # 10, 10, 10, 5 in id order, then (a full sweep) one statement above the UUIDv7s: none.
    assert result.batches[JobStatus.COMPLETED] == 5
    assert await job_ids(pool) == {kept}


async def test_a_job_whose_key_still_holds_is_kept_until_the_key_expires(
    pool: asyncpg.Pool,
) -> None:
    idempotent = await insert_job(
        pool,
        JobStatus.COMPLETED,
        created_ago=2 * DAY,
        idempotency_key="k-live",
        idempotency_expires_in=HOUR,
    )
    unique = await insert_job(
        pool, JobStatus.COMPLETED, created_ago=2 * DAY, unique_key="u-live", unique_until_in=HOUR
    )
    await insert_job(
        pool,
        JobStatus.COMPLETED,
        created_ago=2 * DAY,
        idempotency_key="k-expired",
        idempotency_expires_in=-HOUR,
        unique_key="u-expired",
        unique_until_in=-HOUR,
    )

    result = await Retention(pool, RETENTION_S).run_round()

    assert result.deleted[JobStatus.COMPLETED] == 1
    assert await job_ids(pool) == {idempotent, unique}
    # The expired keys went with their row: a new job may take them (the indexes are unique).
    await insert_job(
        pool,
        JobStatus.PENDING,
        created_ago=timedelta(0),
        idempotency_key="k-expired",
        idempotency_expires_in=HOUR,
        unique_key="u-expired",
    )


async def test_a_replica_without_the_lock_skips_the_round(pool: asyncpg.Pool) -> None:
    old = await insert_job(pool, JobStatus.COMPLETED, created_ago=2 * DAY)
    retention = Retention(pool, RETENTION_S)
    async with pool.acquire() as other:  # another replica, in the middle of its round
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", RETENTION_LOCK_KEY)
        skipped = await retention.run_round()
        assert not skipped.locked
        assert skipped.deleted == {}
        assert old in await job_ids(pool)
        await other.execute("SELECT pg_advisory_unlock($1)", RETENTION_LOCK_KEY)

    worked = await retention.run_round()

    assert worked.locked
    assert old not in await job_ids(pool)
    # The lock went back with the round: another replica gets it now.
    async with pool.acquire() as other:
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", RETENTION_LOCK_KEY)
        await other.execute("SELECT pg_advisory_unlock($1)", RETENTION_LOCK_KEY)


async def test_rows_below_the_cursor_are_found_by_the_next_full_sweep(
    pool: asyncpg.Pool,
) -> None:
    # Created first, still running when the first round passes it.
    late = await insert_job(pool, JobStatus.RUNNING, created_ago=10 * DAY)
    await insert_job(pool, JobStatus.COMPLETED, created_ago=5 * DAY)
    retention = Retention(pool, RETENTION_S, full_sweep_every=2)
    assert (await retention.run_round()).deleted[JobStatus.COMPLETED] == 1  # a full sweep
    # It finishes; pretend long ago (as if days had passed).
    await pool.execute(
        "UPDATE jobs SET status = 'completed', finished_at = now() - interval '2 days',"
        " lease_owner = NULL, lease_expires_at = NULL WHERE id = $1",
        late,
    )

    resumed = await retention.run_round()  # starts where the last ended: past it
    swept = await retention.run_round()  # from the first id again

    assert resumed.deleted[JobStatus.COMPLETED] == 0
    assert swept.deleted[JobStatus.COMPLETED] == 1
    assert await job_ids(pool) == set()


async def test_retention_shorter_than_the_clock_slack_is_refused(pool: asyncpg.Pool) -> None:
    with pytest.raises(ValueError, match="at least 60 s"):
        Retention(pool, {JobStatus.COMPLETED: 59.0})
    with pytest.raises(ValueError, match="never deleted"):
        Retention(pool, {JobStatus.PENDING: DAY.total_seconds()})


async def test_a_deleted_job_takes_its_own_dependency_edges_with_it(pool: asyncpg.Pool) -> None:
    old_parent = await insert_job(pool, JobStatus.COMPLETED, created_ago=5 * DAY)
    old_dependant = await insert_job(pool, JobStatus.COMPLETED, created_ago=4 * DAY)
    young_dependant = await insert_job(pool, JobStatus.COMPLETED, created_ago=HOUR)
    await pool.executemany(
        "INSERT INTO job_dependencies (job_id, depends_on, satisfied) VALUES ($1, $2, true)",
        [(old_dependant, old_parent), (young_dependant, old_parent)],
    )

    await Retention(pool, RETENTION_S).run_round()

    edges = await pool.fetch("SELECT job_id, depends_on FROM job_dependencies")
    # The old dependant's edge went with it; the young one keeps its edge to the deleted
    # parent (shown as gone) until it is deleted too.
    assert [(e["job_id"], e["depends_on"]) for e in edges] == [(young_dependant, old_parent)]
    assert await job_ids(pool) == {young_dependant}


async def test_a_parent_whose_dependants_are_not_settled_is_kept_until_they_are(
    pool: asyncpg.Pool,
) -> None:
    """Its worker died between recording its outcome and telling its dependants: deleted
    before the rescuer's sweep told them, it left them pending for ever."""
    parent = await insert_job(pool, JobStatus.COMPLETED, created_ago=5 * DAY)
    dependant = await insert_job(pool, JobStatus.PENDING, created_ago=5 * DAY)
    await pool.execute("UPDATE jobs SET dependants_unsettled = true WHERE id = $1", parent)
    await pool.execute("UPDATE jobs SET waiting_for = 1 WHERE id = $1", dependant)
    await pool.execute(
        "INSERT INTO job_dependencies (job_id, depends_on) VALUES ($1, $2)", dependant, parent
    )

    await Retention(pool, RETENTION_S).run_round()
    assert await job_ids(pool) == {parent, dependant}

    await Queue(pool).settle_dependants([parent])
    await Retention(pool, RETENTION_S).run_round()
    assert await job_ids(pool) == {dependant}
    waiting = await pool.fetchval("SELECT waiting_for FROM jobs WHERE id = $1", dependant)
    assert waiting == 0


async def test_a_row_without_finished_at_does_not_hide_how_far_behind_retention_is(
    pool: asyncpg.Pool,
) -> None:
    odd = await insert_job(pool, JobStatus.COMPLETED, created_ago=40 * DAY)
    await pool.execute("UPDATE jobs SET finished_at = NULL WHERE id = $1", odd)
    await insert_job(pool, JobStatus.COMPLETED, created_ago=30 * DAY)

    result = await Retention(pool, {JobStatus.COMPLETED: 60 * DAY.total_seconds()}).run_round()

    assert result.oldest_s[JobStatus.COMPLETED] == pytest.approx(30 * DAY.total_seconds(), abs=60)


# -- ids that are not UUIDv7 (rows carried over from the Go service, which made UUIDv4s) --------


def _uuid4_clear_of_recent_times(rng: random.Random, window: timedelta) -> uuid.UUID:
    """A random UUIDv4 whose first 48 bits do not read as a time within ``window`` of now. A few
    in a million do, and retention deletes those late on purpose (test_a_non_uuid7_id_that_
    reads_as_a_recent_time_...): drawn by the hundred, they would fail a test now and then."""
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    while True:
        drawn = uuid.UUID(int=rng.getrandbits(128), version=4)
        if abs((drawn.int >> 80) - now_ms) > window.total_seconds() * 1000:
            return drawn


async def _reid(pool: asyncpg.Pool, job_id: uuid.UUID, new_id: uuid.UUID) -> uuid.UUID:
    """The job under ``new_id``: insert_job makes UUIDv7s, as the queue does."""
    await pool.execute("UPDATE jobs SET id = $2 WHERE id = $1", job_id, new_id)
    return new_id


async def _insert_uuid4_job(
    pool: asyncpg.Pool, rng: random.Random, status: JobStatus, **kwargs: Any
) -> uuid.UUID:
    job_id = await insert_job(pool, status, **kwargs)
    return await _reid(pool, job_id, _uuid4_clear_of_recent_times(rng, 10 * DAY))


async def test_finished_jobs_with_uuidv4_ids_are_deleted_past_their_retention(
    pool: asyncpg.Pool,
) -> None:
    """The reviewer's case: 600 jobs from the Go service, finished 90 days ago. The walk in id
    order found only the few whose random id fell below the cutoff's UUID."""
    rng = random.Random(20261207)  # noqa: S311 - ids, not secrets
    statuses = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)
    gone = {
        await _insert_uuid4_job(pool, rng, statuses[i % 3], created_ago=90 * DAY)
        for i in range(600)
    }
    # The extremes of the id space: below every UUIDv7 and above them all.
    for edge in (uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)):
        job_id = await insert_job(pool, JobStatus.COMPLETED, created_ago=90 * DAY)
        gone.add(await _reid(pool, job_id, edge))
    kept = {
        # Finished within their status's retention.
        await _insert_uuid4_job(pool, rng, JobStatus.COMPLETED, created_ago=12 * HOUR),
        await _insert_uuid4_job(pool, rng, JobStatus.FAILED, created_ago=2 * DAY),
        await _insert_uuid4_job(pool, rng, JobStatus.CANCELLED, created_ago=DAY + HOUR),
        await _insert_uuid4_job(
            pool, rng, JobStatus.COMPLETED, created_ago=90 * DAY, finished_ago=HOUR
        ),
        # Never deleted, however old.
        await _insert_uuid4_job(pool, rng, JobStatus.PENDING, created_ago=400 * DAY),
        await _insert_uuid4_job(pool, rng, JobStatus.RUNNING, created_ago=400 * DAY),
        # A key that still holds.
        await _insert_uuid4_job(
            pool,
            rng,
            JobStatus.COMPLETED,
            created_ago=90 * DAY,
            idempotency_key="k-live",
            idempotency_expires_in=HOUR,
        ),
    }
    # Dependants not told of its outcome yet.
    unsettled = await _insert_uuid4_job(pool, rng, JobStatus.FAILED, created_ago=90 * DAY)
    await pool.execute("UPDATE jobs SET dependants_unsettled = true WHERE id = $1", unsettled)
    kept.add(unsettled)
    # A deleted job's own dependency edges go with it, whatever its id.
    dependant = next(iter(gone))
    await pool.execute(
        "INSERT INTO job_dependencies (job_id, depends_on, satisfied) VALUES ($1, $2, true)",
        dependant,
        uuid.uuid4(),
    )
    # UUIDv7 rows alongside, deleted and kept as before.
    gone.add(await insert_job(pool, JobStatus.COMPLETED, created_ago=2 * DAY))
    kept.add(await insert_job(pool, JobStatus.COMPLETED, created_ago=HOUR))

    result = await Retention(pool, RETENTION_S, batch=100).run_round()

    assert await job_ids(pool) == kept
    assert await pool.fetchval("SELECT count(*) FROM job_dependencies") == 0
    assert sum(result.deleted.values()) == len(gone)
    assert result.deleted == {
        JobStatus.COMPLETED: 200 + 2 + 1,
        JobStatus.FAILED: 200,
        JobStatus.CANCELLED: 200,
    }


async def test_uuidv4_rows_are_deleted_in_batches_and_only_by_full_sweeps(
    pool: asyncpg.Pool,
) -> None:
    rng = random.Random(7)  # noqa: S311 - ids, not secrets
    for _ in range(25):
        await _insert_uuid4_job(pool, rng, JobStatus.COMPLETED, created_ago=5 * DAY)
    retention = Retention(pool, RETENTION_S, batch=10, full_sweep_every=2)

    first = await retention.run_round()  # a full sweep

    assert first.deleted[JobStatus.COMPLETED] == 25
    # One statement in id order (none of these below the cutoff's UUID), then 10, 10, 5.
    assert first.batches[JobStatus.COMPLETED] == 1 + 3
    assert await job_ids(pool) == set()

    late = await _insert_uuid4_job(pool, rng, JobStatus.COMPLETED, created_ago=5 * DAY)
    resumed = await retention.run_round()  # the walk in id order only, from its cursor
    assert resumed.deleted[JobStatus.COMPLETED] == 0
    assert resumed.batches[JobStatus.COMPLETED] == 1
    assert await job_ids(pool) == {late}

    swept = await retention.run_round()  # a full sweep again
    assert swept.deleted[JobStatus.COMPLETED] == 1
    assert await job_ids(pool) == set()


async def test_a_non_uuid7_id_that_reads_as_a_recent_time_waits_for_the_walk_in_id_order(
    pool: asyncpg.Pool,
) -> None:
    """A UUIDv4 whose first 48 bits read as a time between the cutoff and now (one in about
    100,000 for a 30-day retention) lies among the recent UUIDv7s, where neither statement
    reads: it is deleted by the walk in id order once that time passes the cutoff."""
    job_id = await insert_job(pool, JobStatus.COMPLETED, created_ago=5 * DAY)
    recent_ms = int((datetime.now(UTC) - HOUR).timestamp() * 1000)
    odd = await _reid(
        pool, job_id, uuid.UUID(int=(recent_ms << 80) | (uuid.uuid4().int & (2**80 - 1)))
    )
    assert odd.version == 4

    # Retention 1 day: the cutoff's UUID is below the id's time; kept for now.
    await Retention(pool, RETENTION_S).run_round()
    assert await job_ids(pool) == {odd}

    # As if the day had passed: a retention of 30 minutes puts the cutoff after its time.
    short = Retention(pool, {JobStatus.COMPLETED: 30 * 60.0})
    assert (await short.run_round()).deleted[JobStatus.COMPLETED] == 1
    assert await job_ids(pool) == set()


async def test_the_pass_over_non_uuid7_ids_reads_none_of_the_uuid7_history(
    pool: asyncpg.Pool,
) -> None:
    """Its cost: the non-UUIDv7 rows of the status's index, never the history the queue made.
    20,000 UUIDv7 jobs finished within their retention, of every final status, and 30 UUIDv4
    ones: each status's statement reads far fewer pages than a scan of the table."""
    await pool.execute(
        """
        INSERT INTO jobs (id, type, payload, status, created_at, started_at, finished_at)
        SELECT (lpad(to_hex((extract(epoch FROM t) * 1000)::bigint), 12, '0') || '7'
                || substr(md5(i::text), 1, 3) || '8' || substr(md5(i::text), 4, 15))::uuid,
               'noop', '{}', (ARRAY['completed', 'failed', 'cancelled'])[1 + i % 3], t, t, t
        FROM generate_series(1, 20000) AS i,
             LATERAL (SELECT now() - interval '12 hours' + i * interval '1 second') AS at(t)
        """
    )
    rng = random.Random(3)  # noqa: S311 - ids, not secrets
    for i in range(30):
        await _insert_uuid4_job(pool, rng, RETAINED_STATUSES[i % 3], created_ago=5 * DAY)
    await pool.execute("VACUUM ANALYZE jobs")
    pages: int = await pool.fetchval("SELECT relpages FROM pg_class WHERE oid = 'jobs'::regclass")
    assert pages > 100, "the history must be big enough for a scan of it to show"

    async with pool.acquire() as conn:
        for status in RETAINED_STATUSES:
            statement = Q_DELETE_NOT_UUID7_BATCH[status]
            args = statement.args(
                retention_s=DAY.total_seconds(),
                batch=1000,
                from_id=uuid.UUID(int=0),
                clock_slack_s=CLOCK_SLACK_S,
            )
            # EXPLAIN ANALYZE runs the delete: rolled back, each status starts from the same rows.
            transaction = conn.transaction()
            await transaction.start()
            try:
                rows = await conn.fetch(
                    "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) " + statement.text, *args
                )
            finally:
                await transaction.rollback()
            plan = "\n".join(r[0] for r in rows)
            assert "Seq Scan on jobs" not in plan, f"{status}:\n{plan}"
            # The walk: the rows it met, deleted or kept, are UUIDv4 ones only.
            walk = re.search(
                r"Index Scan using (\w+) on jobs \(actual rows=(\d+)"
                r"(?:(?!->).)*?Rows Removed by Filter: (\d+)",
                plan,
                re.DOTALL,
            )
            assert walk is not None, plan
            index, met, removed = walk.group(1), int(walk.group(2)), int(walk.group(3))
            expected = "pk_jobs" if status is JobStatus.COMPLETED else "ix_jobs_failed_cancelled"
            assert index == expected, plan
            assert met == 10, f"{status}: its 10 rows deleted\n{plan}"
            assert met + removed <= 30, f"{status}: read {met + removed} rows\n{plan}"
            touched = _pages_touched(plan)
            assert touched < pages // 4, f"{status}: {touched} of {pages} pages\n{plan}"


def _pages_touched(plan: str) -> int:
    """Shared buffers hit or read by the whole statement: its top node's Buffers line."""
    execution = plan.split("\nPlanning:", maxsplit=1)[0]
    match = re.search(r"Buffers: shared((?: (?:hit|read|dirtied|written)=\d+)+)", execution)
    assert match is not None, plan
    return sum(int(n) for n in re.findall(r"(?:hit|read)=(\d+)", match.group(1)))


def test_both_deletes_keep_the_same_jobs_beyond_their_id_ranges() -> None:
    # Two statements, so that each walks an exact index range under any plan; everything that
    # keeps a job (its age, a live key, unsettled dependants) and what goes with a deleted one
    # must stay the same in both, or one would delete what the other keeps.
    def rules(name: str) -> list[str]:
        statement = RETENTION_QUERIES[name]
        # Each statement numbers its parameters in its own order: by name again.
        text = re.sub(r"\$(\d+)", lambda m: ":" + statement.params[int(m[1]) - 1], statement.text)
        lines = [line.split("--")[0].strip() for line in text.splitlines()]
        code = [line for line in lines if line]
        return code[next(i for i, line in enumerate(code) if line.startswith("AND finished_at")) :]

    assert rules("delete_finished_batch") == rules("delete_finished_batch_not_uuid7")
