"""Retention: finished jobs are deleted once older than their status's retention.

A job that is completed, failed or cancelled is kept for its status's retention, counted from
``finished_at``, and then deleted with its row, which takes its idempotency and unique keys
along. Pending and running jobs are never touched, however old. A retention of ``None`` keeps
that status for good.

How it stays cheap on a big, busy table:

- **Small batches, each its own short transaction.** One statement deletes at most ``batch``
  rows (autocommit), taking them ``FOR UPDATE SKIP LOCKED``: it never waits on a job someone
  holds, and holds its row locks for the milliseconds the statement runs. Nothing stays open
  between batches, so no long transaction holds back vacuum.
- **No new index.** Ids are UUIDv7 (creation order), and a job finishes after it is created,
  so a walk of the primary key (completed) or of ``ix_jobs_failed_cancelled`` (failed,
  cancelled) in id order, bounded above by the UUID of the cutoff, reads the rows to delete
  and the few kept among them (see ``sql/retention.sql``).
- **Ids that are not UUIDv7**, such as the UUIDv4s of the rows carried over from the Go
  service this one replaced, say nothing of when their job was made, so the walk above finds
  only the few that fall below its bound. Each full sweep (below) also walks the same index
  from the UUID of (now + :data:`CLOCK_SLACK_S`), above every id the queue makes, to the end of
  the id space, and deletes by ``finished_at`` the rows there whose id is not a UUIDv7
  (``delete_finished_batch_not_uuid7``): the same rules, the same batches. It reads the
  non-UUIDv7 rows in that range (completed: all of them; failed and cancelled: theirs), once a
  full sweep, and never a row the queue made; with none left, one index probe a status. That
  set only shrinks: the queue makes UUIDv7s only. A non-UUIDv7 id whose first 48 bits read
  as a time within the last retention (1 in 100,000 for 30 days) lies among the recent UUIDv7s
  and is deleted by the walk in id order once that time passes the cutoff.
- **A cursor.** Each batch starts where the last one ended, so a round reads each row once. The
  next round starts where this one ended too: rows below were kept because they were not
  finished long enough then (running, or failed and kept longer while the walk is for
  completed ones). Every :data:`FULL_SWEEP_EVERY` rounds a round starts from the first id
  again, to take those that have aged since: a job finished late is deleted at most that many
  intervals after its retention.
- **One replica at a time.** A round holds a session-level advisory lock
  (:data:`RETENTION_LOCK_KEY`) on the connection that runs its batches; a replica that does
  not get it skips the round. Each batch is a separate statement on that connection, so the
  lock spans the round while no transaction does. If the connection dies, PostgreSQL drops
  the lock with it; asyncpg's pool also unlocks all advisory locks when a connection returns.
  (A transaction-pooling proxy such as PgBouncer in transaction mode would break session
  locks; the deployment connects directly.)

A round holds one connection of the worker's pool while it runs (milliseconds when nothing is
due; a first round over a long backlog runs for as long as its batches take, one statement at a
time). The other statements share the rest of the pool meanwhile.

Measured on PostgreSQL 18, 2 shared cores, 2 million jobs over 30 days (95 % completed, 3 %
failed, 1 % cancelled, the rest pending), retention 7/30/7 days: the first round deleted 1.47
million rows in 1,487 batches of 1,000 in 8.5 s (about 6 ms a batch, 12 ms for a cancelled one
in EXPLAIN ANALYZE); the next round, resumed, 61 ms; a full sweep with nothing due, 104 ms (the
completed walk passes the 47,500 failed and cancelled rows kept longer: 30 ms; the oldest-age
read, 51 ms).

Expired keys of kept jobs are not cleared here: the enqueue path frees an expired key when a
new job wants it (queue_core.keyed), so clearing them early would only cost writes.
"""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final

import asyncpg
import asyncpg.pool

from queue_core.db import translate_connection_errors
from queue_core.sql import RETENTION_QUERIES, Statement
from queue_core.states import JobStatus

Q_TRY_LOCK: Final = RETENTION_QUERIES["retention_try_lock"]
Q_UNLOCK: Final = RETENTION_QUERIES["retention_unlock"]
Q_OLDEST_FINISHED: Final = RETENTION_QUERIES["oldest_finished"]
RETAINED_STATUSES: Final = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)
# One delete statement per status, the status a literal so that the planner may use the partial
# index of failed and cancelled jobs (see sql/retention.sql). The values are the enum's own
# lowercase words, so quoting them needs no escaping. The placeholder is no parameter, so the
# statement's parameters stay as they are.
_DELETE_BATCH: Final = RETENTION_QUERIES["delete_finished_batch"]
_DELETE_NOT_UUID7_BATCH: Final = RETENTION_QUERIES["delete_finished_batch_not_uuid7"]


def _per_status(template: Statement) -> dict[JobStatus, Statement]:
    return {
        status: replace(template, text=template.text.replace("{status}", f"'{status.value}'"))
        for status in RETAINED_STATUSES
    }


Q_DELETE_BATCH: Final = _per_status(_DELETE_BATCH)
Q_DELETE_NOT_UUID7_BATCH: Final = _per_status(_DELETE_NOT_UUID7_BATCH)

# The advisory lock key of retention: an arbitrary constant no other part of the code uses
# ("retain" in ASCII); the migrations' lock is another.
RETENTION_LOCK_KEY: Final = 0x72_65_74_61_69_6E
# How far the clock of a process that makes ids (the API) may run ahead of the database's:
# the walk's upper bound is this much above the cutoff. Also the least retention allowed.
CLOCK_SLACK_S: Final = 60.0
# One round in this many starts from the first id again (see the module docstring).
FULL_SWEEP_EVERY: Final = 60
_FIRST_ID: Final = uuid.UUID(int=0)


@dataclass(slots=True)
class RoundResult:
    """One round: whether this replica held the lock, the rows deleted and the batches run
    per status, and how long ago the oldest job of each status finished (None: none left).
    ``oldest_s`` is read only by the replica that held the lock."""

    locked: bool
    deleted: dict[JobStatus, int] = field(default_factory=dict)
    batches: dict[JobStatus, int] = field(default_factory=dict)
    oldest_s: dict[JobStatus, float | None] = field(default_factory=dict)


class Retention:
    """Deletes finished jobs past their retention, in rounds (:meth:`run_round`)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        retention_s: Mapping[JobStatus, float | None],
        *,
        batch: int = 1000,
        full_sweep_every: int = FULL_SWEEP_EVERY,
    ) -> None:
        for status, seconds in retention_s.items():
            if status not in RETAINED_STATUSES:
                raise ValueError(f"{status.value} jobs are never deleted")
            if seconds is not None and seconds < CLOCK_SLACK_S:
                raise ValueError(f"retention must be at least {CLOCK_SLACK_S:g} s")
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self._pool = pool
        self._retention_s = {s: retention_s.get(s) for s in RETAINED_STATUSES}
        self._batch = batch
        self._full_sweep_every = full_sweep_every
        self._rounds = 0
        self._cursor: dict[JobStatus, uuid.UUID] = dict.fromkeys(RETAINED_STATUSES, _FIRST_ID)

    async def run_round(self) -> RoundResult:
        """Take the lock or return ``locked=False`` at once; then delete, status by status and
        batch by batch, every job past its retention, and read the oldest finished ages."""
        async with translate_connection_errors(), self._pool.acquire() as conn:
            if not await Q_TRY_LOCK.fetchval(conn, lock_key=RETENTION_LOCK_KEY):
                return RoundResult(locked=False)
            try:
                result = RoundResult(locked=True)
                full_sweep = self._rounds % self._full_sweep_every == 0
                if full_sweep:
                    self._cursor = dict.fromkeys(RETAINED_STATUSES, _FIRST_ID)
                self._rounds += 1
                for status, seconds in self._retention_s.items():
                    if seconds is not None:
                        await self._delete_batches(
                            conn,
                            Q_DELETE_BATCH[status],
                            status,
                            seconds=seconds,
                            cursors=self._cursor,
                            result=result,
                        )
                        if full_sweep:
                            # The ids that are not UUIDv7 (module docstring), with a cursor
                            # of this pass's own: the statement starts no lower than its bound.
                            await self._delete_batches(
                                conn,
                                Q_DELETE_NOT_UUID7_BATCH[status],
                                status,
                                seconds=seconds,
                                cursors={status: _FIRST_ID},
                                result=result,
                            )
                row = await Q_OLDEST_FINISHED.fetchrow(conn)
                if row is not None:
                    result.oldest_s = {s: row[s.value] for s in RETAINED_STATUSES}
                return result
            finally:
                if not conn.is_closed():
                    try:
                        await Q_UNLOCK.execute(conn, lock_key=RETENTION_LOCK_KEY)
                    except BaseException:
                        # The pool keeps sessions as they are (db.create_pool): a session still
                        # holding the lock must end, or no replica could take it again.
                        conn.terminate()
                        raise

    async def _delete_batches(  # noqa: PLR0913 - the walk's statement, status and position
        self,
        conn: asyncpg.pool.PoolConnectionProxy,
        query: Statement,
        status: JobStatus,
        *,
        seconds: float,
        cursors: dict[JobStatus, uuid.UUID],
        result: RoundResult,
    ) -> None:
        """Run ``query``, one of the per-status deletes, batch by batch from ``cursors[status]``
        until a batch comes back short, moving that cursor past each batch (kept if a later
        one fails) and counting into ``result``: one figure per status, for the logs and
        metrics, whichever statement found the rows."""
        while True:
            rows = await query.fetch(
                conn,
                retention_s=seconds,
                batch=self._batch,
                from_id=cursors[status],
                clock_slack_s=CLOCK_SLACK_S,
            )
            result.batches[status] = result.batches.get(status, 0) + 1
            result.deleted[status] = result.deleted.get(status, 0) + len(rows)
            if rows:
                cursors[status] = max(r["id"] for r in rows)
            if len(rows) < self._batch:
                return
