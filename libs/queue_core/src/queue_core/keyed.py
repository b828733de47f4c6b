"""Enqueueing with keys: idempotency keys (the same request twice gives one job) and unique keys
(one job per key while it is pending or running, or for a period), race-free across processes.

The rule, in one place for every caller (``Queue`` on its pool, ``queue_core.transactional`` on
a caller's connection), as statements of ``sql/keyed.sql``:

1. Insert the job ``ON CONFLICT DO NOTHING``: the partial unique indexes decide, so of any
   number of concurrent enqueues with one key exactly one inserts.
2. Nothing inserted: read the holders of the keys in a new statement (which sees the winner).
   - The idempotency key's holder comes first. Its lifetime over: free the key, go to 1. Its
     fingerprint differs from this request's: :class:`IdempotencyKeyReusedError`. Else this is
     a retry of the request that made it: :attr:`EnqueueOutcome.REPLAYED`.
   - The unique key's holder: its period over, free the key, go to 1; else
     :attr:`EnqueueOutcome.DUPLICATE`.
   - Neither (the holder finished or was freed between the two statements): go to 1.

Each step is one statement, so under READ COMMITTED (PostgreSQL's default) this is correct
outside a transaction (each statement its own) and inside a caller's (each statement sees what
committed before it). Under REPEATABLE READ or SERIALIZABLE, a conflict with a transaction the
snapshot cannot see raises a serialization failure instead: retry the transaction.
"""

import json
from collections.abc import Sequence
from typing import Any, Final, Protocol

import asyncpg
import asyncpg.pool
from uuid_utils.compat import uuid7

from queue_core.db import translate_connection_errors, translate_input_errors
from queue_core.errors import (
    DatabaseConflictError,
    IdempotencyKeyReusedError,
    InvalidJobError,
    TransientDatabaseError,
)
from queue_core.jobs import Enqueued, EnqueueOutcome, NewJob
from queue_core.sql import KEYED_QUERIES, QUERIES

Q_ENQUEUE_MANY: Final = QUERIES["enqueue_many"]
Q_ENQUEUE_KEYED: Final = KEYED_QUERIES["enqueue_keyed"]
Q_ENQUEUE_KEYED_MANY: Final = KEYED_QUERIES["enqueue_keyed_many"]
Q_KEYED_HOLDERS: Final = KEYED_QUERIES["keyed_holders"]
Q_RELEASE_IDEMPOTENCY_KEY: Final = KEYED_QUERIES["release_idempotency_key"]
Q_RELEASE_UNIQUE_KEY: Final = KEYED_QUERIES["release_unique_key"]

# What the API accepts as an Idempotency-Key: 1 to 255 printable ASCII characters (space
# included, not first or last: HTTP strips those), stored prefixed by its caller's namespace.
MAX_IDEMPOTENCY_KEY_LENGTH: Final = 255
IDEMPOTENCY_KEY_PATTERN: Final = r"^[!-~]([ -~]*[!-~])?$"
# The longest period a unique key may be held for: a year.
MAX_UNIQUE_FOR_S: Final = 365 * 24 * 3600.0

# A holder vanishes between the insert and the read only when it finishes or is freed in that
# instant; a few tries are plenty, and a key fought over harder than that is a transient
# conflict (the API answers 503, the client retries).
MAX_KEYED_TRIES: Final = 5


class Row(Protocol):
    """A row read by column name (an asyncpg Record, a SQLAlchemy RowMapping)."""

    def __getitem__(self, key: str, /) -> Any: ...  # noqa: ANN401 - any column


class Db(Protocol):
    """Where statements run: a pool, or one connection (perhaps inside its caller's
    transaction). Positional ``$n`` parameters; rows read by column name."""

    async def fetch(self, query: str, *args: object) -> Sequence[Row]: ...

    async def execute(self, query: str, *args: object) -> None: ...


def is_keyed(job: NewJob) -> bool:
    return job.unique_key is not None or job.idempotency is not None


def enqueue_many_args(jobs: Sequence[NewJob]) -> tuple[list[Any], ...]:
    """New ids and the parameters of ``enqueue_many`` for ``jobs`` (the ids come first)."""
    # Time-ordered ids (UUIDv7): jobs made together sit together in the primary key, so a
    # batch claimed or finished touches a few index pages, not one random page per job,
    # however much history the table holds.
    return (
        [uuid7() for _ in jobs],
        [j.type for j in jobs],
        [json.dumps(j.payload) for j in jobs],
        [j.queue for j in jobs],
        [j.priority for j in jobs],
        [j.max_attempts for j in jobs],
        [j.scheduled_at for j in jobs],
        [j.timeout_s for j in jobs],
    )


async def enqueue_keyed(db: Db, job: NewJob, *, waiting_for: int = 0) -> Enqueued:
    """Enqueue one job that has a unique key, an idempotency key or both (module docstring).
    Raises :class:`IdempotencyKeyReusedError` for a key used with another request, and
    :class:`DatabaseConflictError` for a key still fought over after ``MAX_KEYED_TRIES``.
    ``waiting_for``: how many dependencies it is inserted waiting for (``queue_core.gated``,
    which also links them and its concurrency key's row)."""
    job_id = uuid7()
    idempotency = job.idempotency
    idempotency_key = None if idempotency is None else idempotency.key
    args = (
        job_id,
        job.type,
        json.dumps(job.payload),
        job.queue,
        job.priority,
        job.max_attempts,
        job.scheduled_at,
        job.timeout_s,
        idempotency_key,
        None if idempotency is None else idempotency.fingerprint,
        None if idempotency is None else float(idempotency.ttl_s),
        job.unique_key,
        None if job.unique_for_s is None else float(job.unique_for_s),
        job.concurrency_key,
        waiting_for,
    )
    for _ in range(MAX_KEYED_TRIES):
        if await db.fetch(Q_ENQUEUE_KEYED, *args):
            return Enqueued(job_id, EnqueueOutcome.CREATED)
        holders = {
            row["held_by"]: row
            for row in await db.fetch(Q_KEYED_HOLDERS, idempotency_key, job.unique_key)
        }
        if (holder := holders.get("idempotency")) is not None and idempotency is not None:
            if holder["expired"]:
                await db.execute(Q_RELEASE_IDEMPOTENCY_KEY, holder["id"])
                continue
            if bytes(holder["fingerprint"]) != idempotency.fingerprint:
                raise IdempotencyKeyReusedError
            return Enqueued(holder["id"], EnqueueOutcome.REPLAYED)
        if (holder := holders.get("unique")) is not None:
            if holder["expired"]:
                await db.execute(Q_RELEASE_UNIQUE_KEY, holder["id"])
                continue
            return Enqueued(holder["id"], EnqueueOutcome.DUPLICATE)
    raise DatabaseConflictError(RuntimeError("a job key changed hands too often; try again"))


async def enqueue_keyed_group(
    db: Db, jobs: Sequence[NewJob], *, in_transaction: bool = False
) -> list[Enqueued | BaseException]:
    """:func:`enqueue_keyed` for many jobs, as ``Queue`` group-commits concurrent keyed
    enqueues: step 1 of the rule for all of them in one statement (one commit, one NOTIFY per
    queue), then steps 2 and on for each job it did not insert. One result per job, in order:
    an exception in place of an :class:`Enqueued` fails that job alone. For jobs without a
    concurrency key or dependencies (``queue_core.gated``).

    ``in_transaction``: ``db`` is a connection in its caller's transaction, which a job the
    database refuses has aborted: that raises, instead of trying the jobs one by one."""
    ids = [uuid7() for _ in jobs]
    try:
        rows = await db.fetch(
            Q_ENQUEUE_KEYED_MANY,
            ids,
            [j.type for j in jobs],
            [json.dumps(j.payload) for j in jobs],
            [j.queue for j in jobs],
            [j.priority for j in jobs],
            [j.max_attempts for j in jobs],
            [j.scheduled_at for j in jobs],
            [j.timeout_s for j in jobs],
            [None if j.idempotency is None else j.idempotency.key for j in jobs],
            [None if j.idempotency is None else j.idempotency.fingerprint for j in jobs],
            [None if j.idempotency is None else float(j.idempotency.ttl_s) for j in jobs],
            [j.unique_key for j in jobs],
            [None if j.unique_for_s is None else float(j.unique_for_s) for j in jobs],
        )
    except InvalidJobError:
        if len(jobs) == 1 or in_transaction:
            raise
        rows = []  # one job the database refuses: each on its own, below
    inserted = {row["id"] for row in rows}
    results: list[Enqueued | BaseException] = []
    for job_id, job in zip(ids, jobs, strict=True):
        if job_id in inserted:
            results.append(Enqueued(job_id, EnqueueOutcome.CREATED))
            continue
        try:
            results.append(await enqueue_keyed(db, job))
        # An outage here fails the jobs still to look at, never the ones already inserted.
        except (IdempotencyKeyReusedError, InvalidJobError, TransientDatabaseError) as exc:
            results.append(exc)
    return results


async def enqueue_all(db: Db, jobs: Sequence[NewJob]) -> list[Enqueued]:
    """Enqueue ``jobs`` on ``db``, which must be one connection inside a transaction when
    all-or-nothing matters: the jobs without keys in one ``enqueue_many`` statement, the keyed
    ones in one more (:func:`enqueue_keyed_group`), then a look at the holders of those it did
    not insert. Returns one :class:`Enqueued` per job, in order. Two jobs of ``jobs`` with
    one unique key give the first job twice, the second time as a duplicate."""
    plain = [j for j in jobs if not is_keyed(j)]
    results: list[Enqueued | None] = [None] * len(jobs)
    if plain:
        args = enqueue_many_args(plain)
        await db.execute(Q_ENQUEUE_MANY, *args)
        created = iter(args[0])
        for index, job in enumerate(jobs):
            if not is_keyed(job):
                results[index] = Enqueued(next(created), EnqueueOutcome.CREATED)
    keyed = [(index, job) for index, job in enumerate(jobs) if is_keyed(job)]
    if keyed:
        outcomes = await enqueue_keyed_group(db, [job for _, job in keyed], in_transaction=True)
        for (index, _), outcome in zip(keyed, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                raise outcome  # all or nothing: the caller's transaction rolls back
            results[index] = outcome
    return [r for r in results if r is not None]


class AsyncpgDb:
    """:class:`Db` on an asyncpg pool (each statement its own transaction) or connection (in
    whatever transaction it is in), with queue_core's error translation."""

    def __init__(
        self, target: asyncpg.Pool | asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
    ) -> None:
        self._target = target

    async def fetch(self, query: str, *args: object) -> Sequence[Row]:
        async with translate_connection_errors(), translate_input_errors():
            rows: list[asyncpg.Record] = await self._target.fetch(query, *args)
        return rows

    async def execute(self, query: str, *args: object) -> None:
        async with translate_connection_errors(), translate_input_errors():
            await self._target.execute(query, *args)
