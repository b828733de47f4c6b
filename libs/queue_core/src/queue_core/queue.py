"""The queue's typed API: the one place where jobs are created and change state.

Every method runs one named statement from ``sql/queries.sql`` on a pooled connection, in its
own implicit transaction; asyncpg prepares and caches each statement per connection.
Unreachable-database errors surface as :class:`~queue_core.errors.DatabaseUnavailableError`;
nothing here retries on its own, so each caller decides (the API answers 503, the worker backs
off).
"""

import uuid
from collections.abc import Sequence

import asyncpg

from queue_core.db import translate_connection_errors
from queue_core.errors import JobNotFoundError
from queue_core.jobs import ClaimedJob, FailedOutcome, Failure, JobRecord, NewJob
from queue_core.sql import QUERIES
from queue_core.states import JobStatus

Q_ENQUEUE = QUERIES["enqueue"]
Q_GET_JOB = QUERIES["get_job"]
Q_CLAIM = QUERIES["claim"]
Q_COMPLETE = QUERIES["complete"]
Q_FAIL = QUERIES["fail"]
Q_PING = QUERIES["ping"]

PING_TIMEOUT_S = 2.0


class Queue:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    async def ping(self) -> None:
        """Raise unless the database answers a trivial query."""

        async with translate_connection_errors():
            await self._pool.fetchval(Q_PING, timeout=PING_TIMEOUT_S)

    async def enqueue(self, job: NewJob) -> uuid.UUID:
        """Store ``job`` as pending and wake a worker if it is due now. Returns its id."""
        job_id = uuid.uuid4()

        async with translate_connection_errors():
            await self._pool.execute(
                Q_ENQUEUE,
                job_id,
                job.type,
                job.payload,
                job.queue,
                job.priority,
                job.max_attempts,
                job.scheduled_at,
            )
        return job_id

    async def get(self, job_id: uuid.UUID) -> JobRecord:
        async with translate_connection_errors():
            row = await self._pool.fetchrow(Q_GET_JOB, job_id)
        if row is None:
            raise JobNotFoundError(job_id)
        return JobRecord(
            id=row["id"],
            type=row["type"],
            payload=row["payload"],
            status=JobStatus(row["status"]),
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
            error_message=row["error_message"],
            scheduled_at=row["scheduled_at"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            queue=row["queue"],
            priority=row["priority"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
        )

    async def claim(
        self, *, worker_id: str, queues: Sequence[str], limit: int, lease_s: float
    ) -> list[ClaimedJob]:
        """Lease at most ``limit`` due jobs to ``worker_id``; never blocks on other claimers."""
        if limit <= 0:
            return []

        async with translate_connection_errors():
            rows = await self._pool.fetch(Q_CLAIM, worker_id, list(queues), limit, lease_s)
        return [
            ClaimedJob(
                id=r["id"],
                type=r["type"],
                payload=r["payload"],
                queue=r["queue"],
                priority=r["priority"],
                attempt=r["attempts"],
                max_attempts=r["max_attempts"],
                created_at=r["created_at"],
                scheduled_at=r["scheduled_at"],
                started_at=r["started_at"],
            )
            for r in rows
        ]

    async def complete(self, *, worker_id: str, job_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Mark jobs completed. Returns the ids that were still leased to ``worker_id``; any
        other id was rescued or cancelled meanwhile and is left as it is."""
        if not job_ids:
            return set()

        async with translate_connection_errors():
            rows = await self._pool.fetch(Q_COMPLETE, list(job_ids), worker_id)
        return {r["id"] for r in rows}

    async def fail(self, *, worker_id: str, failures: Sequence[Failure]) -> list[FailedOutcome]:
        """Record failed attempts: each job is retried after its backoff while attempts remain,
        else it becomes failed. Jobs no longer leased to ``worker_id`` are left alone."""
        if not failures:
            return []

        async with translate_connection_errors():
            rows = await self._pool.fetch(
                Q_FAIL,
                [f.job_id for f in failures],
                [f.error for f in failures],
                [f.retry_in_s for f in failures],
                [f.final for f in failures],
                worker_id,
            )
        return [
            FailedOutcome(
                job_id=r["id"],
                status=JobStatus(r["status"]),
                attempts=r["attempts"],
                scheduled_at=r["scheduled_at"],
            )
            for r in rows
        ]
