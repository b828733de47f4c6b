"""The queue's typed API: the one place where jobs are created and change state.

Every method runs one named statement from ``sql/queries.sql`` on a pooled connection, in its
own implicit transaction; asyncpg prepares and caches each statement per connection.
Transient database errors (unreachable, or a statement aborted to break a deadlock) surface as
:class:`~queue_core.errors.TransientDatabaseError`; nothing here retries on its own, so each
caller decides (the API answers 503, the worker backs off).
"""

import contextlib
import math
import time
import uuid
from collections.abc import Iterable, Sequence

import asyncpg
import structlog

from queue_core.db import HeldConnection, translate_connection_errors, translate_input_errors
from queue_core.dependencies import (
    Q_FAIL_ORPHANED_DEPENDANTS,
    Q_JOB_DEPENDENCIES,
    Q_QUEUES_OF_JOBS,
    Q_RELEASE_MISCOUNTED_DEPENDANTS,
    Q_SETTLE_LOCK_TIMEOUT,
    Q_UNSETTLED_PARENTS,
    SETTLE_LOCK_TIMEOUT_S,
    settle,
)
from queue_core.errors import (
    DatabaseConflictError,
    DependencyEndedError,
    InvalidJobError,
    JobNotFoundError,
    JobStateConflictError,
    QueueError,
    UniqueKeyHeldError,
)
from queue_core.gated import enqueue_gated_all, is_gated
from queue_core.group_commit import GroupCommitter
from queue_core.jobs import (
    ClaimedJob,
    Dependency,
    Enqueued,
    EnqueueOutcome,
    Failure,
    JobRecord,
    JobsTableStats,
    Lease,
    NewJob,
    Outcome,
    OutcomeKind,
    QueueStats,
    Recorded,
    Rescued,
    Transition,
)
from queue_core.keyed import (
    AsyncpgDb,
    enqueue_all,
    enqueue_keyed_group,
    first_row,
    is_keyed,
    job_columns,
)
from queue_core.limits import MAX_ERRORS_KEPT
from queue_core.queue_events import NoQueueEvents, QueueEvents
from queue_core.sql import QUERIES, Statement
from queue_core.states import STATUS_BY_VALUE, JobStatus

Q_ENQUEUE_MANY = QUERIES["enqueue_many"]
Q_ENQUEUE_ONE = QUERIES["enqueue_one"]
Q_GET_JOB = QUERIES["get_job"]
Q_CLAIM = QUERIES["claim"]
Q_CLAIM_KEYED = QUERIES["claim_keyed"]
Q_KEYED_DUE = QUERIES["keyed_due"]
Q_FINISH = QUERIES["finish"]
Q_NOTIFY_QUEUES = QUERIES["notify_queues"]
Q_HEARTBEAT = QUERIES["heartbeat"]
Q_RESCUE_EXPIRED = QUERIES["rescue_expired"]
Q_CANCEL = QUERIES["cancel"]
Q_RETRY = QUERIES["retry"]
Q_DELETE_FINISHED = QUERIES["delete_finished"]
Q_PING = QUERIES["ping"]
Q_QUEUE_STATS = QUERIES["queue_stats"]
Q_OLDEST_TRANSACTION_AGE = QUERIES["oldest_transaction_age"]
Q_JOBS_TABLE_STATS = QUERIES["jobs_table_stats"]

PING_TIMEOUT_S = 2.0
# How long the group commits of single enqueues keep their connections once batches stop coming
# (queue_core.db.HeldConnection): far above a lone caller's gap between two enqueues (a
# millisecond over HTTP), short enough that closing the pool waits little for it.
WRITER_IDLE_S = 0.05
# Settling transactions (each MAX_LEVELS_PER_TRANSACTION levels of a chain) that a call must not
# wait beyond: a cancel over HTTP, the rescuer. The levels beyond are left to the sweep.
SETTLE_TRANSACTIONS_INLINE = 10
# How long a claimer trusts its last look for keyed jobs due (keyed_due). Plain claims cannot
# see keyed jobs, so this is the longest a keyed job can wait for a worker that saw none,
# bought with one probe per interval instead of a heavier statement on every claim.
KEYED_PROBE_INTERVAL_S = 0.2
# Keyed claims take turns (lock_keyed_claims). How long a claim waits for its turn before it
# takes plain jobs alone this time: far above a turn (one statement of milliseconds per
# claimer ahead), so only a holder that stalls runs into it.
KEYED_TURN_WAIT_S = 5.0

log: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger("queue_core.queue")


class Queue:
    def __init__(self, pool: asyncpg.Pool, *, events: QueueEvents | None = None) -> None:
        self._pool = pool
        self._events: QueueEvents = events if events is not None else NoQueueEvents()
        self._enqueuer: GroupCommitter[NewJob, uuid.UUID] = GroupCommitter(
            self._enqueue_group, name="enqueue", retry_transient=False
        )
        # The group commits write one batch at a time each: on a connection kept while they come.
        self._writer = HeldConnection(pool, idle_s=WRITER_IDLE_S)
        self._keyed_writer = HeldConnection(pool, idle_s=WRITER_IDLE_S)
        self._keyed_enqueuer: GroupCommitter[NewJob, Enqueued] = GroupCommitter(
            self._enqueue_keyed_group, name="enqueue_keyed", retry_transient=False
        )
        # The last keyed_due answer, for which queues, and when (monotonic seconds).
        self._keyed_probe: tuple[tuple[str, ...], bool, float] = ((), False, -math.inf)

    async def ping(self) -> None:
        """Raise unless the database answers a trivial query."""

        async with translate_connection_errors():
            # asyncpg's own timeout (on the query, not on the wait for a connection) is a
            # keyword of fetchval, so this one call runs the statement's text itself.
            await self._pool.fetchval(Q_PING.text, *Q_PING.args(), timeout=PING_TIMEOUT_S)

    async def enqueue(self, job: NewJob) -> uuid.UUID:
        """Store ``job`` as pending and wake a worker if it is due now. Returns its id.

        Concurrent calls are group-committed: one INSERT, one commit and one NOTIFY for all the
        jobs waiting, which is what lets single-job HTTP enqueues scale (a NOTIFY serialises
        commits). Raises :class:`InvalidJobError` for a job PostgreSQL cannot store, and
        :class:`TransientDatabaseError` when it is unreachable.

        A job with a unique or idempotency key goes through :meth:`enqueue_keyed` instead, and
        the id returned may then be an existing job's. A job with a concurrency key or
        dependencies (``queue_core.gated``) is enqueued in a transaction of its own."""
        if is_gated(job):
            return (await self.enqueue_batch([job]))[0].id
        if job.unique_key is not None or job.idempotency is not None:
            return (await self.enqueue_keyed(job)).id
        return await self._enqueuer.submit(job)

    async def enqueue_keyed(self, job: NewJob) -> Enqueued:
        """Enqueue a job with a unique key, an idempotency key or both (``queue_core.keyed``):
        the new job, or the one holding a key. Raises :class:`IdempotencyKeyReusedError` for an
        idempotency key that came with another request. Concurrent calls are group-committed
        like :meth:`enqueue`'s: one INSERT for all, then a look at the holders of the keys of
        the jobs it did not insert (``keyed.enqueue_keyed_group``). A job with a concurrency
        key or dependencies as well goes through :meth:`enqueue_batch`'s transaction."""
        if is_gated(job):
            return (await self.enqueue_batch([job]))[0]
        return await self._keyed_enqueuer.submit(job)

    async def _enqueue_keyed_group(self, jobs: Sequence[NewJob]) -> list[Enqueued | BaseException]:
        async with translate_connection_errors(), self._keyed_writer as conn:
            return await enqueue_keyed_group(AsyncpgDb(conn), jobs)

    async def enqueue_batch(self, jobs: Sequence[NewJob]) -> list[Enqueued]:
        """Store ``jobs``, all or none, with what each enqueue did (keyed jobs may answer with
        existing jobs). Without keys this is :meth:`enqueue_many`'s one statement; with keys,
        one transaction, as with limits per key or dependencies (``queue_core.gated``)."""
        gated = any(is_gated(job) for job in jobs)
        if not gated and not any(is_keyed(job) for job in jobs):
            return [Enqueued(i, EnqueueOutcome.CREATED) for i in await self.enqueue_many(jobs)]
        async with (
            translate_connection_errors(),
            self._pool.acquire() as conn,
            conn.transaction(),
        ):
            if gated:
                return await enqueue_gated_all(AsyncpgDb(conn), jobs)
            return await enqueue_all(AsyncpgDb(conn), jobs)

    async def _enqueue_group(self, jobs: Sequence[NewJob]) -> list[uuid.UUID | BaseException]:
        async with translate_connection_errors(), self._writer as conn:
            try:  # no keyed job gets here (enqueue)
                return list(await self._insert_many(jobs, conn))
            except InvalidJobError:
                if len(jobs) == 1:
                    raise
            # One job the database refuses must not fail the others that shared its statement.
            results: list[uuid.UUID | BaseException] = []
            for job in jobs:
                try:
                    results.extend(await self._insert_many([job], conn))
                except InvalidJobError as exc:
                    results.append(exc)
            return results

    async def enqueue_many(self, jobs: Sequence[NewJob]) -> list[uuid.UUID]:
        """Store many jobs in one statement, all or none. Returns their ids in order (with
        keyed jobs, see :meth:`enqueue_batch`, whose ids these are)."""
        if not jobs:
            return []
        if any(is_keyed(j) or is_gated(j) for j in jobs):
            return [e.id for e in await self.enqueue_batch(jobs)]
        return await self._insert_many(jobs, self._pool)

    async def _insert_many(
        self, jobs: Sequence[NewJob], db: asyncpg.Pool | asyncpg.Connection
    ) -> list[uuid.UUID]:
        """enqueue_many's statement, for jobs without keys."""
        columns = job_columns(jobs)
        async with translate_connection_errors(), translate_input_errors():
            if len(jobs) == 1:  # a lone caller's: the same row, without the arrays
                await Q_ENQUEUE_ONE.execute(db, **first_row(columns))
            else:
                await Q_ENQUEUE_MANY.execute(db, **columns)
        ids: list[uuid.UUID] = columns["id"]
        return ids

    async def get(self, job_id: uuid.UUID) -> JobRecord:
        async with translate_connection_errors():
            row = await Q_GET_JOB.fetchrow(self._pool, job_id=job_id)
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
            timeout_s=row["timeout_s"],
            cancel_requested_at=row["cancel_requested_at"],
            lease_owner=row["lease_owner"],
            lease_expires_at=row["lease_expires_at"],
            result=row["result"],
            errors=row["errors"],
            unique_key=row["unique_key"],
            unique_until=row["unique_until"],
            concurrency_key=row["concurrency_key"],
            waiting_for=row["waiting_for"],
        )

    async def dependencies(self, job_id: uuid.UUID) -> list[Dependency]:
        """The jobs ``job_id`` depends on (none for an unknown job), in id order."""
        async with translate_connection_errors():
            rows = await Q_JOB_DEPENDENCIES.fetch(self._pool, job_id=job_id)
        return [
            Dependency(
                id=r["id"],
                status=None if r["status"] is None else STATUS_BY_VALUE[r["status"]],
                satisfied=r["satisfied"],
            )
            for r in rows
        ]

    async def queues_of(self, job_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
        """The queue of each job of ``job_ids`` that exists."""
        async with translate_connection_errors():
            rows = await Q_QUEUES_OF_JOBS.fetch(self._pool, job_ids=list(job_ids))
        return {r["id"]: r["queue"] for r in rows}

    async def settle_dependants(
        self, job_ids: Sequence[uuid.UUID], *, max_transactions: int | None = None
    ) -> None:
        """Tell the dependants of ``job_ids`` (jobs with an outcome) of it, in transactions of
        their own (``queue_core.dependencies``), each a bounded number of levels deep: as many
        as it takes, or at most ``max_transactions`` (callers that must not spend seconds on a
        long chain: the levels beyond stay flagged, and the sweep settles them). Never raises:
        the outcome is recorded already, and what fails here the sweep
        (:meth:`settle_stragglers`) settles later."""
        parents = list(job_ids)
        done = 0
        while parents and (max_transactions is None or done < max_transactions):
            try:
                async with (
                    translate_connection_errors(),
                    self._pool.acquire() as conn,
                    conn.transaction(),
                ):
                    await Q_SETTLE_LOCK_TIMEOUT.execute(
                        conn, lock_timeout=f"{round(SETTLE_LOCK_TIMEOUT_S * 1000)}ms"
                    )
                    parents = await settle(AsyncpgDb(conn), parents)
            except (QueueError, asyncpg.PostgresError) as exc:
                log.warning("dependants_not_settled", jobs=len(parents), error=str(exc))
                self._events.dependants_not_settled(len(parents))
                return
            done += 1

    async def settle_stragglers(self, *, limit: int = 1000, min_age_s: float = 10.0) -> int:
        """Settle the dependants of up to ``limit`` jobs whose outcome is older than
        ``min_age_s`` and whose dependants were never settled (the process that recorded it
        died first). Returns how many such jobs there were."""
        async with translate_connection_errors():
            rows = await Q_UNSETTLED_PARENTS.fetch(self._pool, limit=limit, min_age_s=min_age_s)
        # Bounded: the rescuer runs this between rescues (the levels beyond are found by its
        # next sweeps).
        await self.settle_dependants(
            [r["id"] for r in rows], max_transactions=SETTLE_TRANSACTIONS_INLINE
        )
        return len(rows)

    async def fail_orphaned_dependants(self, *, limit: int = 1000) -> int:
        """Fail up to ``limit`` pending jobs that wait for a dependency which no longer exists
        (deleted by hand), with a reason naming it, and settle their own dependants. Returns
        how many failed. Without it they would wait for ever."""
        async with translate_connection_errors():
            rows = await Q_FAIL_ORPHANED_DEPENDANTS.fetch(self._pool, limit=limit)
        for r in rows:
            log.warning("dependant_orphaned", job_id=str(r["id"]), missing=str(r["missing"]))
        if rows:
            self._events.dependants_repaired("orphaned", len(rows))
        await self.settle_dependants(
            [r["id"] for r in rows if r["dependants_unsettled"]],
            max_transactions=SETTLE_TRANSACTIONS_INLINE,
        )
        return len(rows)

    async def release_miscounted_dependants(
        self, *, limit: int = 1000, min_age_s: float = 600.0
    ) -> int:
        """Make due up to ``limit`` pending jobs that wait (``waiting_for`` above 0) with no
        dependency left to complete: a count raised, or an edge deleted, by hand. Only those
        unchanged for ``min_age_s`` (see the statement for why). Returns how many were
        released. Without it they would wait for ever."""
        async with translate_connection_errors():
            rows = await Q_RELEASE_MISCOUNTED_DEPENDANTS.fetch(
                self._pool, limit=limit, min_age_s=min_age_s
            )
        for r in rows:
            log.warning(
                "dependant_miscounted",
                job_id=str(r["id"]),
                waiting_for=r["was_waiting_for"],
                detail="no dependency of it is left to complete: released",
            )
        if rows:
            self._events.dependants_repaired("miscounted", len(rows))
        return len(rows)

    async def claim(
        self, *, worker_id: str, queues: Sequence[str], limit: int, lease_s: float
    ) -> list[ClaimedJob]:
        """Lease at most ``limit`` due jobs to ``worker_id``. Jobs with a concurrency key are
        claimed only while :meth:`_keyed_due` says some are due, by ``claim_keyed``, plain and
        keyed jobs together within each key's limits, in turns across the fleet
        (:meth:`_claim_keyed`); plain jobs alone pay nothing for that and never wait for
        other claimers (``claim``)."""
        if limit <= 0:
            return []
        values = {
            "worker_id": worker_id,
            "queues": list(queues),
            "limit": limit,
            "lease_s": lease_s,
        }
        async with translate_connection_errors():
            if not await self._keyed_due(queues):
                rows = await Q_CLAIM.fetch(self._pool, **values)
            else:
                rows = await self._claim_keyed(values)
        return [
            ClaimedJob(
                id=r["id"],
                type=r["type"],
                payload=r["payload"],
                queue=r["queue"],
                priority=r["priority"],
                attempt=r["attempts"],
                max_attempts=r["max_attempts"],
                timeout_s=r["timeout_s"],
                waited_s=r["waited_s"],
            )
            for r in rows
        ]

    async def _claim_keyed(self, values: dict[str, object]) -> list[asyncpg.Record]:
        """``claim_keyed`` in its turn, in one round trip. A claim that waits
        ``KEYED_TURN_WAIT_S`` for its turn (a holder stalled) takes plain jobs alone this time,
        so that they still flow."""
        try:
            rows: list[asyncpg.Record] = await Q_CLAIM_KEYED.fetch(
                self._pool, turn_wait_ms=round(KEYED_TURN_WAIT_S * 1000), **values
            )
        except asyncpg.LockNotAvailableError:
            log.warning("keyed_claim_turn_timed_out", waited_s=KEYED_TURN_WAIT_S)
            self._events.keyed_claim_turn_timed_out()
        else:
            return rows
        plain: list[asyncpg.Record] = await Q_CLAIM.fetch(self._pool, **values)
        return plain

    async def _keyed_due(self, queues: Sequence[str]) -> bool:
        """Whether ``queues`` have keyed jobs due, as last seen at most
        ``KEYED_PROBE_INTERVAL_S`` ago (else asked again now)."""
        names = tuple(queues)
        seen_for, due, at = self._keyed_probe
        now = time.monotonic()
        if seen_for == names and now - at < KEYED_PROBE_INTERVAL_S:
            return due
        async with translate_connection_errors():
            due = bool(await Q_KEYED_DUE.fetchval(self._pool, queues=list(names)))
        self._keyed_probe = (names, due, now)
        return due

    async def finish(
        self, *, worker_id: str, outcomes: Sequence[Outcome], settle_now: bool = True
    ) -> list[Recorded]:
        """Record how attempts ended, all in one statement. Returns the jobs whose outcome was
        recorded; a job missing from the result was no longer leased to ``worker_id`` (rescued
        after a lost heartbeat, or already finished) and was left as it is. Jobs released back
        to pending wake their queues' workers. The dependants of jobs with an outcome are
        settled before it returns, or, with ``settle_now=False``, left to the caller (the jobs
        marked ``dependants_unsettled``): settling a long chain takes seconds."""
        if not outcomes:
            return []
        async with translate_connection_errors():
            rows = await Q_FINISH.fetch(
                self._pool,
                job_ids=[o.job_id for o in outcomes],
                worker_id=worker_id,
                outcomes=[o.kind.value for o in outcomes],
                error_messages=[o.error for o in outcomes],
                retry_in_s=[o.retry_in_s for o in outcomes],
                attempts=[o.attempt for o in outcomes],
                results=[o.result for o in outcomes],
                errors_kept=MAX_ERRORS_KEPT,
            )
            released = {o.job_id for o in outcomes if o.kind is OutcomeKind.RELEASED}
            wake = released and {
                r["queue"] for r in rows if r["id"] in released and r["status"] == "pending"
            }
            if wake:
                await Q_NOTIFY_QUEUES.execute(self._pool, queues=sorted(wake))
        if settle_now:
            await self.settle_dependants([r["id"] for r in rows if r["dependants_unsettled"]])
        return [
            Recorded(
                job_id=r["id"],
                status=STATUS_BY_VALUE[r["status"]],
                attempts=r["attempts"],
                scheduled_at=r["scheduled_at"],
                dependants_unsettled=not settle_now and r["dependants_unsettled"],
            )
            for r in rows
        ]

    async def complete(self, *, worker_id: str, job_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Mark jobs completed; returns the ids that were still leased to ``worker_id``."""
        outcomes = [Outcome(job_id, OutcomeKind.COMPLETED) for job_id in job_ids]
        return {r.job_id for r in await self.finish(worker_id=worker_id, outcomes=outcomes)}

    async def fail(self, *, worker_id: str, failures: Sequence[Failure]) -> list[Recorded]:
        """Record failed attempts: retried after their backoff while attempts remain, else
        failed. Jobs no longer leased to ``worker_id`` are left alone."""
        return await self.finish(worker_id=worker_id, outcomes=[f.outcome() for f in failures])

    async def heartbeat(
        self, *, worker_id: str, attempts: Sequence[tuple[uuid.UUID, int]], lease_s: float
    ) -> list[Lease]:
        """Extend the leases of the attempts ``worker_id`` runs, given as (job id, attempt)
        pairs. Returns those still leased to it, each saying whether its cancellation was
        requested."""
        if not attempts:
            return []
        async with translate_connection_errors():
            rows = await Q_HEARTBEAT.fetch(
                self._pool,
                job_ids=[a[0] for a in attempts],
                worker_id=worker_id,
                lease_s=lease_s,
                attempts=[a[1] for a in attempts],
            )
        return [
            Lease(job_id=r["id"], attempt=r["attempts"], cancel_requested=r["cancel_requested"])
            for r in rows
        ]

    async def rescue_expired(self, *, limit: int = 1000) -> list[Rescued]:
        """Take back up to ``limit`` jobs whose lease ran out (their worker is gone)."""
        async with translate_connection_errors():
            rows = await Q_RESCUE_EXPIRED.fetch(
                self._pool, limit=limit, errors_kept=MAX_ERRORS_KEPT
            )
        await self.settle_dependants(
            [r["id"] for r in rows if r["dependants_unsettled"]],
            max_transactions=SETTLE_TRANSACTIONS_INLINE,
        )
        return [
            Rescued(
                job_id=r["id"],
                status=JobStatus(r["status"]),
                type=r["type"],
                queue=r["queue"],
                lost_worker=r["lost_worker"],
            )
            for r in rows
        ]

    async def stats(self) -> list[QueueStats]:
        """Depth of every queue that has pending or running jobs (cheap at any table size)."""
        async with translate_connection_errors():
            rows = await Q_QUEUE_STATS.fetch(self._pool)
        return [
            QueueStats(
                queue=r["queue"],
                due=r["due"],
                scheduled=r["scheduled"],
                running=r["running"],
                oldest_due_age_s=r["oldest_due_age_s"],
            )
            for r in rows
        ]

    async def oldest_transaction_age_s(self) -> float:
        async with translate_connection_errors():
            age: float = await Q_OLDEST_TRANSACTION_AGE.fetchval(self._pool)
        return age

    async def jobs_table_stats(self) -> JobsTableStats | None:
        """The jobs table's size on disk and dead rows, from the catalogue alone (no row of
        jobs is read); None if the table does not exist."""
        async with translate_connection_errors():
            row = await Q_JOBS_TABLE_STATS.fetchrow(self._pool)
        if row is None:
            return None
        return JobsTableStats(
            heap_bytes=row["heap_bytes"],
            toast_bytes=row["toast_bytes"],
            index_bytes=row["index_bytes"],
            live_tuples=row["live_tuples"],
            dead_tuples=row["dead_tuples"],
            vacuum_age_s=row["vacuum_age_s"],
            analyze_age_s=row["analyze_age_s"],
        )

    async def cancel(self, job_id: uuid.UUID) -> Transition:
        """Cancel a pending job at once (``after`` is cancelled), or ask a running job's worker
        to stop it at its next heartbeat (``after`` is still running). Raises
        :class:`JobStateConflictError` for a finished job."""
        return await self._transition(Q_CANCEL, job_id, "cancelled", "pending or running")

    async def retry(self, job_id: uuid.UUID) -> Transition:
        """Put a failed or cancelled job back to pending with a fresh attempt budget. Raises
        :class:`JobStateConflictError` for any other status, and :class:`DependencyEndedError`
        while it waits for a dependency that failed for good, was cancelled or was deleted."""
        return await self._transition(Q_RETRY, job_id, "retried", "failed or cancelled")

    async def _transition(
        self, query: Statement, job_id: uuid.UUID, action: str, allowed: str
    ) -> Transition:
        try:
            async with translate_connection_errors():
                row = await query.fetchrow(self._pool, job_ids=[job_id])
        except asyncpg.UniqueViolationError as exc:
            # A retry puts a job back among the pending: its unique key (ix_jobs_unique_key)
            # may have been taken by a job enqueued since it finished.
            raise UniqueKeyHeldError(job_id, action) from exc
        if row is None:
            raise JobNotFoundError(job_id)
        if query is Q_RETRY and row["ended_dependency"] is not None:
            raise DependencyEndedError(
                job_id, row["before"], row["ended_dependency"], row["ended_dependency_status"]
            )
        if row["after"] is None:
            raise JobStateConflictError(job_id, row["before"], action, allowed)
        if query is Q_CANCEL and row["dependants_unsettled"]:
            await self.settle_dependants([job_id], max_transactions=SETTLE_TRANSACTIONS_INLINE)
        return Transition(before=JobStatus(row["before"]), after=JobStatus(row["after"]))

    async def cancel_many(self, job_ids: Sequence[uuid.UUID]) -> int:
        """:meth:`cancel` for many jobs in one statement; returns how many it cancelled or asked
        to stop (finished and unknown jobs are left alone, uncounted)."""
        return await self._transition_many(Q_CANCEL, job_ids)

    async def retry_many(self, job_ids: Sequence[uuid.UUID]) -> int:
        """:meth:`retry` for many jobs in one statement; returns how many went back to pending.
        A job whose unique key another job has taken since, or that waits for a dependency
        that ended without completing and is not among ``job_ids``, is left as it is,
        uncounted."""
        try:
            return await self._transition_many(Q_RETRY, job_ids)
        except asyncpg.UniqueViolationError:
            pass
        # One held unique key failed the whole statement: one job at a time, skipping those,
        # oldest first (a job is older than its dependants: retry refuses a dependant whose
        # dependency is still failed).
        retried = 0
        for job_id in sorted(job_ids):
            with contextlib.suppress(asyncpg.UniqueViolationError):
                retried += await self._transition_many(Q_RETRY, [job_id])
        return retried

    async def _transition_many(self, query: Statement, job_ids: Sequence[uuid.UUID]) -> int:
        if not job_ids:
            return 0
        async with translate_connection_errors():
            rows = await query.fetch(self._pool, job_ids=list(job_ids))
        if query is Q_CANCEL:
            await self.settle_dependants(
                [r["id"] for r in rows if r["dependants_unsettled"]],
                max_transactions=SETTLE_TRANSACTIONS_INLINE,
            )
        return sum(1 for r in rows if r["after"] is not None)

    async def delete_finished(self, job_id: uuid.UUID) -> None:
        """Delete a completed, failed or cancelled job. Raises :class:`JobNotFoundError`, or
        :class:`JobStateConflictError` for a pending or running job."""
        for first_try in (True, False):
            async with translate_connection_errors():
                row = await Q_DELETE_FINISHED.fetchrow(self._pool, job_id=job_id)
            if row is None:
                raise JobNotFoundError(job_id)
            if row["deleted"]:
                return
            if not (row["unsettled"] and STATUS_BY_VALUE[row["status"]].is_final):
                raise JobStateConflictError(
                    job_id, row["status"], "deleted", "completed, failed or cancelled"
                )
            if first_try:
                # Its dependants were not told of its outcome yet (its worker died first):
                # told now (its own flag goes in the first transaction), or deleting it would
                # leave them waiting for ever.
                await self.settle_dependants([job_id], max_transactions=1)
        raise DatabaseConflictError(RuntimeError("the job's dependants could not be settled"))
