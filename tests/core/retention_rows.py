"""Jobs written straight into the table, as old as a test needs: the retention tests' rows."""

import random
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from queue_core.states import JobStatus

_RNG = random.Random()  # noqa: S311 - ids, not secrets

INSERT_JOB = """
INSERT INTO jobs (id, type, payload, status, created_at, updated_at, started_at, finished_at,
                  lease_owner, lease_expires_at, idempotency_key, idempotency_fingerprint,
                  idempotency_expires_at, unique_key, unique_until)
VALUES ($1, 'noop', '{}', $2, $3, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
"""


def uuid7_at(at: datetime) -> uuid.UUID:
    """A UUIDv7 whose time is ``at``, as the API's ids are."""
    ms = int(at.timestamp() * 1000)
    rand = _RNG.getrandbits(74)
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & (2**62 - 1))
    return uuid.UUID(int=value)


async def insert_job(
    conn: asyncpg.Connection | asyncpg.Pool,
    status: JobStatus,
    *,
    created_ago: timedelta,
    finished_ago: timedelta | None = None,
    idempotency_key: str | None = None,
    idempotency_expires_in: timedelta = timedelta(hours=-1),
    unique_key: str | None = None,
    unique_until_in: timedelta | None = None,
) -> uuid.UUID:
    """A job created ``created_ago`` and, if final, finished ``finished_ago`` (default: just
    after it was created). Running jobs get a lease. Keys are set only when given."""
    now = datetime.now(UTC)
    created = now - created_ago
    finished: datetime | None = None
    if status.is_final:
        finished = now - (finished_ago if finished_ago is not None else created_ago)
    running = status is JobStatus.RUNNING
    job_id = uuid7_at(created)
    await conn.execute(
        INSERT_JOB,
        job_id,
        status.value,
        created,
        created if status is not JobStatus.PENDING else None,
        finished,
        "w-test" if running else None,
        now + timedelta(minutes=5) if running else None,
        idempotency_key,
        b"fingerprint" if idempotency_key is not None else None,
        now + idempotency_expires_in if idempotency_key is not None else None,
        unique_key,
        now + unique_until_in if unique_until_in is not None else None,
    )
    return job_id


async def job_ids(conn: asyncpg.Connection | asyncpg.Pool) -> set[uuid.UUID]:
    return {r["id"] for r in await conn.fetch("SELECT id FROM jobs")}
