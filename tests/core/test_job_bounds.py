"""No row in ``jobs`` can stop the queue: the schema refuses values outside queue_core.limits,
and migration 0004 brought the rows an older version let in back inside them."""

import asyncio
import json
import math
import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from queue_core.db import create_pool
from queue_core.limits import MAX_TIMEOUT_S, SCHEDULED_AT_MAX, SCHEDULED_AT_MIN
from queue_core.migrate import upgrade
from queue_core.models import TIMESTAMP_COLUMNS
from queue_core.queue import Queue

ONE_US = timedelta(microseconds=1)


async def _insert(conn: asyncpg.Connection, **columns: Any) -> uuid.UUID:
    """A row written straight into the table, as a hand edit or an old bug would. Values are
    given as PostgreSQL would read them from text ('-infinity', 'NaN', '0044-03-15 BC'), which
    Python's types cannot all express; the columns left out take their defaults."""
    job_id = uuid.uuid4()
    values = {"id": str(job_id), "type": "noop", "payload": {}, **columns}
    for name, value in values.items():
        if isinstance(value, datetime):
            values[name] = value.isoformat()
        elif isinstance(value, float):
            values[name] = repr(value).replace("nan", "NaN").replace("inf", "Infinity")
    names = ", ".join(values)
    await conn.execute(
        f"INSERT INTO jobs ({names}) SELECT {names} FROM json_populate_record(NULL::jobs, $1)",
        json.dumps(values),
    )
    return job_id


async def _refused(conn: asyncpg.Connection, **columns: Any) -> bool:
    try:
        async with conn.transaction():
            await _insert(conn, **columns)
    except asyncpg.CheckViolationError:
        return True
    return False


@pytest.mark.parametrize("column", TIMESTAMP_COLUMNS)
async def test_every_timestamp_is_held_to_the_accepted_range(db_url: str, column: str) -> None:
    conn = await asyncpg.connect(db_url)
    # running rows need a lease; a finished status keeps each column independent of the others
    base: dict[str, Any] = {"status": "completed"}
    try:
        for value in ("-infinity", "infinity"):
            assert await _refused(conn, **base, **{column: value}), value
        for instant in (SCHEDULED_AT_MIN - ONE_US, SCHEDULED_AT_MAX):
            assert await _refused(conn, **base, **{column: instant}), instant
        for instant in (SCHEDULED_AT_MIN, SCHEDULED_AT_MAX - ONE_US):
            assert not await _refused(conn, **base, **{column: instant}), instant
    finally:
        await conn.close()


async def test_timeouts_must_be_positive_finite_and_at_most_a_week(db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        # PostgreSQL orders NaN above every number: "timeout_s > 0" alone would let it in.
        for bad in (math.nan, math.inf, -1.0, 0.0, MAX_TIMEOUT_S + 1):
            assert await _refused(conn, timeout_s=bad), bad
        assert not await _refused(conn, timeout_s=MAX_TIMEOUT_S)
    finally:
        await conn.close()


async def test_a_pending_job_always_has_an_attempt_left(db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        # The claim adds one to attempts: at 2**31 - 1 that would fail every claim of the queue.
        assert await _refused(conn, attempts=2**31 - 1, max_attempts=2**31 - 1)
        assert await _refused(conn, attempts=3, max_attempts=3)
        assert not await _refused(conn, attempts=2, max_attempts=3)
        assert not await _refused(conn, status="failed", attempts=3, max_attempts=3)
    finally:
        await conn.close()


async def test_the_bounds_are_validated_not_only_promised(db_url: str) -> None:
    """Added NOT VALID, then validated: a constraint left unvalidated would not vouch for the
    rows already there."""
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(
            "SELECT conname, convalidated FROM pg_constraint "
            "WHERE conrelid = 'jobs'::regclass AND contype = 'c'"
        )
    finally:
        await conn.close()
    validated = {r["conname"]: r["convalidated"] for r in rows}
    for name in (
        "ck_jobs_timeout_in_range",
        "ck_jobs_timestamps_in_range",
        "ck_jobs_pending_has_attempts_left",
    ):
        assert validated.get(name) is True, validated


async def test_migration_0004_repairs_rows_an_older_version_let_in(empty_db_url: str) -> None:
    # Alembic runs its own event loop: from a thread, as queue-migrate would be a process.
    await asyncio.to_thread(upgrade, empty_db_url, "0003")
    conn = await asyncpg.connect(empty_db_url)
    try:
        minus_inf = await _insert(conn, scheduled_at="-infinity")  # POST with year 1
        year_one = await _insert(conn, scheduled_at="0001-01-01T00:00:00Z")
        plus_inf = await _insert(conn, scheduled_at="infinity")  # POST with year 9999
        done_later = await _insert(
            conn, status="completed", scheduled_at="infinity", finished_at="2026-01-01T00:00:00Z"
        )
        nan_timeout = await _insert(conn, timeout_s=math.nan)
        inf_timeout = await _insert(conn, timeout_s=math.inf)
        bc_created = await _insert(conn, created_at="0044-03-15 BC")
        expired_forever = await _insert(
            conn, status="running", lease_owner="w", lease_expires_at="infinity", attempts=1
        )
        no_attempts = await _insert(conn, attempts=5, max_attempts=3)
        await asyncio.to_thread(upgrade, empty_db_url)
        rows = {
            r["id"]: r
            for r in await conn.fetch(
                "SELECT id, status, scheduled_at, timeout_s, error_message, finished_at, "
                "created_at, lease_expires_at FROM jobs"
            )
        }
    finally:
        await conn.close()
    # In the past, or before any real time: due now, still pending.
    for job in (minus_inf, year_one):
        assert rows[job]["status"] == "pending"
        assert rows[job]["scheduled_at"] is None
    # Could never have run: failed, saying why and how to run it anyway.
    assert rows[plus_inf]["status"] == "failed"
    assert rows[plus_inf]["scheduled_at"] is None
    assert "could never run" in rows[plus_inf]["error_message"]
    assert rows[plus_inf]["finished_at"] is not None
    assert rows[done_later]["status"] == "completed"
    assert rows[done_later]["scheduled_at"] is None
    for job in (nan_timeout, inf_timeout):
        assert rows[job]["timeout_s"] is None
    assert SCHEDULED_AT_MIN <= rows[bc_created]["created_at"] < SCHEDULED_AT_MAX
    # A lease that would never expire now has: the rescuer takes the job back.
    assert rows[expired_forever]["status"] == "running"
    assert rows[expired_forever]["lease_expires_at"] < SCHEDULED_AT_MAX
    assert rows[no_attempts]["status"] == "failed"
    assert "no attempts left" in rows[no_attempts]["error_message"]
    # And the queue works on what is left: the repaired due jobs are claimed.
    pool = await create_pool(empty_db_url)
    try:
        claimed = await Queue(pool).claim(worker_id="w2", queues=["default"], limit=100, lease_s=30)
    finally:
        await pool.close()
    assert {j.id for j in claimed} >= {minus_inf, year_one}
