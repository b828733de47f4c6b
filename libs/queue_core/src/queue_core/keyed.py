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
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Protocol
from uuid import UUID

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
from queue_core.limits import (
    MAX_NAME_CHARS,
    MAX_TIMEOUT_S,
    SCHEDULED_AT_MAX,
    SCHEDULED_AT_MIN,
    UNSTORABLE_CHARACTER,
    unstorable_text_at,
)
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
    transaction). A :class:`~queue_core.sql.Statement` runs on it with its text and its
    arguments in ``$n`` order (``await Q_ENQUEUE_KEYED.fetch(db, **values)``); rows read by
    column name."""

    async def fetch(self, query: str, *args: object) -> Sequence[Row]: ...

    async def execute(self, query: str, *args: object) -> None: ...


def is_keyed(job: NewJob) -> bool:
    return job.unique_key is not None or job.idempotency is not None


# One encoder: json.dumps with any option builds a new one per call. ASCII-only output, so that
# what jsonb refuses shows as an escape that one search finds.
_PAYLOAD_ENCODER: Final = json.JSONEncoder(allow_nan=False)
_NUL_OR_SURROGATE_ESCAPE: Final = re.compile(r"\\u(?:0000|d[89a-f])")


def payload_json(payload: object) -> str:
    """``payload`` as the JSON text stored in jobs.payload. Raises :class:`InvalidJobError`,
    saying why, for what jsonb cannot hold or a worker cannot run: a value that is not JSON
    (a set, NaN or an infinity, an int too long to write out), a NUL character or an unpaired
    surrogate in any string, or a payload that is not an object. Checked before any statement:
    such a value failed the statement of every job sharing it (concurrent enqueues are
    group-committed) and aborted a caller's transaction (``queue_core.transactional``)."""
    if not isinstance(payload, dict):
        kind = type(payload).__name__
        raise InvalidJobError(f"the payload must be a JSON object (a dict), not {kind}")
    try:
        text = _PAYLOAD_ENCODER.encode(payload)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidJobError(f"the payload is not JSON: {str(exc)[:200]}") from None
    # Every NUL and surrogate is written as an escape; so are characters beyond the BMP (as a
    # pair), and a backslash before "u0000" as text: the walk tells those apart, rarely needed.
    if "\\u" in text and _NUL_OR_SURROGATE_ESCAPE.search(text) is not None:
        at = unstorable_text_at(payload)
        if at is not None:
            where = "payload" + "".join(f"[{step!r}]" for step in at)
            raise InvalidJobError(
                f"{where} holds text the database cannot store: a NUL character or an "
                "unpaired surrogate"
            )
    return text


# The columns' own ranges: smallint and integer.
_PRIORITY_RANGE: Final = range(-(2**15), 2**15)
_MAX_ATTEMPTS_RANGE: Final = range(1, 2**31)


def check_job(job: NewJob) -> None:
    """Raise :class:`InvalidJobError`, saying which field, for a job the schema would refuse
    (its CHECK constraints, its column types): refused here, before any statement, it fails
    neither the statement of other jobs nor a caller's transaction, and reads the same on every
    driver. The payload is :func:`payload_json`'s."""
    for field, name in (("type", job.type), ("queue", job.queue)):
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS:
            raise InvalidJobError(f"{field} must be a string of 1 to {MAX_NAME_CHARS} characters")
        if UNSTORABLE_CHARACTER.search(name) is not None:
            raise InvalidJobError(f"{field} holds a NUL character or an unpaired surrogate")
    if not isinstance(job.priority, int) or job.priority not in _PRIORITY_RANGE:
        raise InvalidJobError("priority must be an integer from -32768 to 32767")
    if not isinstance(job.max_attempts, int) or job.max_attempts not in _MAX_ATTEMPTS_RANGE:
        raise InvalidJobError("max_attempts must be an integer from 1 to 2147483647")
    timeout_s = job.timeout_s
    if timeout_s is not None and not (
        isinstance(timeout_s, int | float) and 0 < timeout_s <= MAX_TIMEOUT_S  # refuses NaN
    ):
        raise InvalidJobError(f"timeout_s must be above 0 and at most {MAX_TIMEOUT_S:g}")
    at = job.scheduled_at
    if at is not None:
        if not isinstance(at, datetime):
            raise InvalidJobError("scheduled_at must be a datetime")
        aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
        if not SCHEDULED_AT_MIN <= aware < SCHEDULED_AT_MAX:
            raise InvalidJobError(
                f"scheduled_at must be from {SCHEDULED_AT_MIN.year} to before "
                f"{SCHEDULED_AT_MAX.year}"
            )


def job_columns(
    jobs: Sequence[NewJob], ids: Sequence[UUID | None] | None = None
) -> dict[str, list[Any]]:
    """The columns every insert of jobs fills, by the name of their parameter (``enqueue_many``,
    ``enqueue_gated``, ``enqueue_keyed_many``): each column's values for ``jobs``, in order.
    ``ids`` are the jobs' ids, new ones when not given (``columns["id"]``)."""
    for job in jobs:
        check_job(job)
    # Time-ordered ids (UUIDv7): jobs made together sit together in the primary key, so a
    # batch claimed or finished touches a few index pages, not one random page per job,
    # however much history the table holds.
    return {
        "id": [uuid7() for _ in jobs] if ids is None else list(ids),
        "type": [j.type for j in jobs],
        "payload": [payload_json(j.payload) for j in jobs],
        "queue": [j.queue for j in jobs],
        "priority": [j.priority for j in jobs],
        "max_attempts": [j.max_attempts for j in jobs],
        "scheduled_at": [j.scheduled_at for j in jobs],
        "timeout_s": [j.timeout_s for j in jobs],
    }


def key_columns(jobs: Sequence[NewJob]) -> dict[str, list[Any]]:
    """The columns of the jobs' unique and idempotency keys, by parameter name, as
    :func:`job_columns` (``enqueue_keyed``, ``enqueue_keyed_many``)."""
    return {
        "idempotency_key": [None if j.idempotency is None else j.idempotency.key for j in jobs],
        "idempotency_fingerprint": [
            None if j.idempotency is None else j.idempotency.fingerprint for j in jobs
        ],
        "idempotency_ttl_s": [
            None if j.idempotency is None else float(j.idempotency.ttl_s) for j in jobs
        ],
        "unique_key": [j.unique_key for j in jobs],
        "unique_for_s": [None if j.unique_for_s is None else float(j.unique_for_s) for j in jobs],
    }


def first_row(columns: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """The first value of each column: the parameters of a one-row insert (``enqueue_one``,
    ``enqueue_keyed``) from those of its many-row twin."""
    return {name: values[0] for name, values in columns.items()}


async def enqueue_keyed(db: Db, job: NewJob, *, waiting_for: int = 0) -> Enqueued:
    """Enqueue one job that has a unique key, an idempotency key or both (module docstring).
    Raises :class:`IdempotencyKeyReusedError` for a key used with another request, and
    :class:`DatabaseConflictError` for a key still fought over after ``MAX_KEYED_TRIES``.
    ``waiting_for``: how many dependencies it is inserted waiting for (``queue_core.gated``,
    which also links them and its concurrency key's row)."""
    job_id = uuid7()
    idempotency = job.idempotency
    values = first_row(job_columns([job], [job_id]) | key_columns([job]))
    values |= {"concurrency_key": job.concurrency_key, "waiting_for": waiting_for}
    for _ in range(MAX_KEYED_TRIES):
        if await Q_ENQUEUE_KEYED.fetch(db, **values):
            return Enqueued(job_id, EnqueueOutcome.CREATED)
        holders = {
            row["held_by"]: row
            for row in await Q_KEYED_HOLDERS.fetch(
                db, idempotency_key=values["idempotency_key"], unique_key=job.unique_key
            )
        }
        if (holder := holders.get("idempotency")) is not None and idempotency is not None:
            if holder["expired"]:
                await Q_RELEASE_IDEMPOTENCY_KEY.execute(db, job_id=holder["id"])
                continue
            if bytes(holder["fingerprint"]) != idempotency.fingerprint:
                raise IdempotencyKeyReusedError
            return Enqueued(holder["id"], EnqueueOutcome.REPLAYED)
        if (holder := holders.get("unique")) is not None:
            if holder["expired"]:
                await Q_RELEASE_UNIQUE_KEY.execute(db, job_id=holder["id"])
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
    try:
        columns = job_columns(jobs) | key_columns(jobs)
    except InvalidJobError:
        if len(jobs) == 1 or in_transaction:
            raise
        return await _without_refused(db, jobs)
    ids: list[UUID] = columns["id"]
    try:
        rows = await Q_ENQUEUE_KEYED_MANY.fetch(db, **columns)
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


async def _without_refused(db: Db, jobs: Sequence[NewJob]) -> list[Enqueued | BaseException]:
    """:func:`enqueue_keyed_group` for a group some of whose jobs :func:`job_columns` refuses:
    those fail alone, with their own error, and the others are enqueued together."""
    refused: dict[int, InvalidJobError] = {}
    for index, job in enumerate(jobs):
        try:
            job_columns([job])
        except InvalidJobError as exc:
            refused[index] = exc
    valid = [job for index, job in enumerate(jobs) if index not in refused]
    enqueued = iter(await enqueue_keyed_group(db, valid) if valid else [])
    return [refused[i] if i in refused else next(enqueued) for i in range(len(jobs))]


async def enqueue_all(db: Db, jobs: Sequence[NewJob]) -> list[Enqueued]:
    """Enqueue ``jobs`` on ``db``, which must be one connection inside a transaction when
    all-or-nothing matters: the jobs without keys in one ``enqueue_many`` statement, the keyed
    ones in one more (:func:`enqueue_keyed_group`), then a look at the holders of those it did
    not insert. Returns one :class:`Enqueued` per job, in order. Two jobs of ``jobs`` with
    one unique key give the first job twice, the second time as a duplicate."""
    plain = [j for j in jobs if not is_keyed(j)]
    results: list[Enqueued | None] = [None] * len(jobs)
    if plain:
        columns = job_columns(plain)
        await Q_ENQUEUE_MANY.execute(db, **columns)
        created = iter(columns["id"])
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
