"""Connections to PostgreSQL: URL normalisation and the asyncpg pool the queue runs on.

SQLAlchemy describes the schema and drives Alembic; the queue's hot path talks to asyncpg
directly with prepared statements, which is what lets one job cost well under a millisecond.
"""

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import asyncpg
import msgspec
import structlog

from queue_core.errors import DatabaseConflictError, DatabaseUnavailableError, InvalidJobError

# structlog directly: queue_core.log imports the settings, which import this module.
log: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger("queue_core.db")

INVALID_JOB_MESSAGE = (
    "the database cannot store this job: a value is out of the range it can hold, "
    "or text contains a NUL character or an unpaired surrogate"
)

_SCHEMES: Final = ("postgresql+asyncpg://", "postgresql://", "postgres://")


def normalize_database_url(url: str) -> str:
    """Return ``url`` as a plain ``postgresql://`` URL, as asyncpg and libpq expect.

    Accepts the three spellings people use: ``postgresql://``, ``postgres://`` (Heroku and
    many PaaS) and SQLAlchemy's ``postgresql+asyncpg://``.
    """
    for scheme in _SCHEMES:
        if url.startswith(scheme):
            return "postgresql://" + url.removeprefix(scheme)
    raise ValueError(
        "must start with postgresql://, postgres:// or postgresql+asyncpg://",
    )


SSL_MODES: Final = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_SSL_FILES: Final = ("sslrootcert", "sslcert", "sslkey")


def check_tls_options(url: str) -> str:
    """Return ``url`` if asyncpg can use its TLS options (``sslmode``, ``sslrootcert``, ...).

    asyncpg checks them only when it connects, and reports a missing CA file as an OSError,
    which reads as "database unavailable" and would be retried for ever. Checked at start-up
    instead, a typo or an unmounted secret stops the process with a clear line. The messages
    name the option, never the rest of the URL (it may hold a password)."""
    query = parse_qs(urlsplit(url).query)
    for mode in query.get("sslmode", []):
        if mode not in SSL_MODES:
            raise ValueError(f"sslmode must be one of {', '.join(SSL_MODES)}")
    for option in _SSL_FILES:
        for path in query.get(option, []):
            if not os.access(path, os.R_OK):
                raise ValueError(f"{option}: cannot read {path}")
    return url


def sqlalchemy_url(url: str) -> str:
    """The same database as a SQLAlchemy async URL (for Alembic)."""
    return "postgresql+asyncpg://" + normalize_database_url(url).removeprefix("postgresql://")


# Errors that mean "the database is not there right now", as opposed to a bug in our SQL.
CONNECTION_ERRORS: Final[tuple[type[BaseException], ...]] = (
    OSError,  # refused, reset, unreachable, DNS
    TimeoutError,
    asyncpg.PostgresConnectionError,  # includes ConnectionDoesNotExistError
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    asyncpg.AdminShutdownError,
    # Ended by the server for sitting idle in a transaction (idle_in_transaction_session_timeout,
    # where an operator sets it on the role or the database).
    asyncpg.IdleInTransactionSessionTimeoutError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,  # "connection is closed", pool closing
)


# Errors where PostgreSQL gave up on our statement to resolve a conflict with another one:
# nothing was written, and the same statement normally succeeds when tried again.
CONFLICT_ERRORS: Final[tuple[type[BaseException], ...]] = (
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.LockNotAvailableError,
)


_json_decoder = msgspec.json.Decoder()


class UndecodableJson:
    """Stands in for a stored json value Python cannot decode: nested too deeply, or with an
    integer too long to read.

    PostgreSQL holds jsonb thousands of levels deep; msgspec and the standard library both
    give up near a thousand, with a RecursionError. It holds 1e5000, which it prints as an
    integer of 5,001 digits; Python refuses to read more than 4,300 (a ValueError). Raised
    from inside the driver, either error would fail the whole statement, so one such row
    (written straight into the table, or before the API bounded nesting) would fail every
    claim of its queue. Decoded as this marker instead, the row is read like any other and
    its job fails with a clear error."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNDECODABLE_JSON"


UNDECODABLE_JSON: Final = UndecodableJson()


def decode_json(text: str) -> Any:  # noqa: ANN401 - any JSON value
    """A json/jsonb value from PostgreSQL as Python objects. msgspec parses a small payload
    ten times faster than the standard library, which counts when every claimed job carries
    one; the standard library takes the values msgspec refuses and PostgreSQL can hold (a
    number beyond a float's range, such as 1e400, which json.loads reads as inf). A value
    neither can read is :data:`UNDECODABLE_JSON`, never an exception."""
    try:
        return _json_decoder.decode(text)
    except RecursionError:
        return UNDECODABLE_JSON
    except msgspec.MsgspecError:
        pass
    try:
        return json.loads(text)
    except (RecursionError, ValueError):  # ValueError: an integer over 4,300 digits
        return UNDECODABLE_JSON


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb in and out as Python objects; the text codec keeps it one parse per value.
    # Encoding stays json.dumps: it refuses NaN and infinities in a way PostgreSQL then reports
    # (msgspec would silently store null), and enqueueing is not where the time goes.
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=decode_json, schema="pg_catalog"
        )


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """What the pool does to a connection given back, after asyncpg has rolled back any open
    transaction and dropped its listeners: nothing more. asyncpg's default also sends
    ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` every time, a round
    trip each caller waits for: 0.13 ms of a 0.45 ms single enqueue. queue_core leaves no
    session state on a pooled connection: LISTEN has a connection of its own
    (queue_worker.listener), settings are ``SET LOCAL``, cursors live in transactions, and the
    one session-level lock (retention's) is released by its holder, who closes the connection
    if it cannot."""


async def create_pool(
    database_url: str,
    *,
    min_size: int = 0,
    max_size: int = 10,
    connect_timeout_s: float = 5.0,
    application_name: str = "queue",
) -> asyncpg.Pool:
    """A pool that opens connections lazily (``min_size=0`` by default), so a process can start
    while the database is down and recovers by itself when it returns. A connection given back
    keeps its session (:func:`_keep_session`): leave no session state on it."""
    pool = await asyncpg.create_pool(
        normalize_database_url(database_url),
        min_size=min_size,
        max_size=max_size,
        timeout=connect_timeout_s,
        init=_init_connection,
        reset=_keep_session,
        server_settings={
            "application_name": application_name,
            # The statements are written for READ COMMITTED, whatever the database or role
            # defaults to: the keyed claim (queue_claim_keyed) counts a key's running jobs in
            # the snapshot of a statement run once it has its turn, and under REPEATABLE READ
            # that snapshot is the one taken before the turn, which misses the starts of the
            # turn before it (a key's limit exceeded). Transactions that want another level
            # say so (listing's repeatable read).
            "default_transaction_isolation": "read committed",
        },
        # A dropped connection is detected and replaced on its next use; idle ones are recycled.
        max_inactive_connection_lifetime=60.0,
    )
    if pool is None:  # pragma: no cover - asyncpg returns None only for a misused await
        raise RuntimeError("asyncpg.create_pool returned None")
    return pool


@asynccontextmanager
async def translate_input_errors() -> AsyncIterator[None]:
    """Turn "PostgreSQL cannot hold this value" errors into :class:`InvalidJobError`.

    The API validates every field before it gets here, so this is the last line of defence
    for a caller of the library. Its message is ours: the driver's wording (SQL state names,
    byte sequences, constraint names) says nothing useful to a client and describes our
    internals, so it goes to the log instead."""
    try:
        yield
    except (asyncpg.DataError, asyncpg.CheckViolationError) as exc:
        # e.g. \u0000 in jsonb, a timestamp out of range, max_attempts below 1
        log.warning("job_refused_by_database", sqlstate=exc.sqlstate, error=exc.message)
        raise InvalidJobError(INVALID_JOB_MESSAGE) from exc
    except (OverflowError, ValueError) as exc:  # asyncpg refused to encode a parameter
        log.warning("job_refused_by_driver", error=type(exc).__name__)
        raise InvalidJobError(INVALID_JOB_MESSAGE) from exc


@asynccontextmanager
async def translate_connection_errors() -> AsyncIterator[None]:
    """Turn every transient database error into a :class:`TransientDatabaseError`: "database
    is unreachable" into :class:`DatabaseUnavailableError`, and a transaction PostgreSQL
    aborted to break a conflict into :class:`DatabaseConflictError`."""
    try:
        yield
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailableError(exc) from exc
    except CONFLICT_ERRORS as exc:
        raise DatabaseConflictError(exc) from exc
    except asyncpg.InternalClientError as exc:
        # "cannot switch to state ...": a statement started on a connection whose session the
        # server has just ended (its FATAL error read, the socket's close not yet). asyncpg
        # aborts that connection, so a retry gets a fresh one. Only this exact class: its
        # subclasses (ProtocolError, OutdatedSchemaCacheError, ...) are no outage, and a
        # retry would fail the same way for ever.
        if type(exc) is not asyncpg.InternalClientError:
            raise
        raise DatabaseUnavailableError(exc) from exc


def _usable(conn: Any) -> bool:  # noqa: ANN401 - an asyncpg PoolConnectionProxy
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:  # the pool took it back itself when its session ended
        return False


class HeldConnection:
    """A pooled connection kept between the uses of one serial user (``async with held as
    conn``, never two at once) while they follow each other, and given back to the pool once
    unused for ``idle_s``.

    Taking a connection from asyncpg's pool and giving it back costs about 50 µs of CPU (a
    proxy, a timer, a shielded task), and a caller waits for it: an eighth of a lone caller's
    single enqueue, which is one INSERT and a commit. The group commit's writer uses one
    connection at a time, so it keeps this one for as long as batches keep coming.

    Kept only while nobody else can be waiting for it: a use that ends with the pool's every
    connection in use (others may be queued for one: asyncpg serves them in turn, and a kept
    connection would never join that line), or the pool closing, gives it back as the pool's
    own ``acquire`` would. So does a use that raises (the pool resets the connection, or
    replaces it if broken), and a connection found closed when a use begins (the server ended
    its session meanwhile): the next use takes a fresh one.
    """

    __slots__ = ("_conn", "_idle_s", "_in_use", "_last_used", "_pool", "_releases", "_timer")

    def __init__(self, pool: asyncpg.Pool, *, idle_s: float) -> None:
        self._pool = pool
        self._idle_s = idle_s
        self._conn: Any = None  # an asyncpg PoolConnectionProxy
        self._in_use = False
        self._last_used = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._releases: set[asyncio.Task[None]] = set()

    @property
    def held(self) -> bool:
        """Whether a connection is kept from the pool now."""
        return self._conn is not None and _usable(self._conn)

    async def __aenter__(self) -> asyncpg.Connection:
        if self._in_use:
            raise RuntimeError("HeldConnection serves one use at a time")
        self._in_use = True
        try:
            if self._conn is not None and (self._pool.is_closing() or not _usable(self._conn)):
                await self._give_back()
            if self._conn is None:
                self._conn = await self._pool.acquire()
        except BaseException:
            self._in_use = False
            raise
        return self._conn  # type: ignore[no-any-return]

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self._in_use = False
        if exc_type is not None or self._others_may_wait():
            await self._give_back()
            return
        loop = asyncio.get_running_loop()
        self._last_used = loop.time()
        if self._timer is None:
            self._timer = loop.call_later(self._idle_s, self._on_timer)

    def _others_may_wait(self) -> bool:
        pool = self._pool
        exhausted = pool.get_idle_size() == 0 and pool.get_size() >= pool.get_max_size()
        return exhausted or pool.is_closing()

    async def _give_back(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._pool.release(conn)  # shielded by asyncpg: done even if cancelled

    def _on_timer(self) -> None:
        self._timer = None
        if self._conn is None:
            return
        loop = asyncio.get_running_loop()
        idle_for = loop.time() - self._last_used
        if self._in_use or idle_for < self._idle_s:
            wait_s = self._idle_s if self._in_use else self._idle_s - idle_for
            self._timer = loop.call_later(wait_s, self._on_timer)
            return
        # Taken off now, not when the task starts: a use beginning meanwhile takes a new one.
        conn, self._conn = self._conn, None
        release = loop.create_task(self._pool.release(conn))
        self._releases.add(release)
        release.add_done_callback(self._released)

    def _released(self, release: asyncio.Task[None]) -> None:
        self._releases.discard(release)
        if not release.cancelled() and (exc := release.exception()) is not None:
            # The pool terminates a connection it cannot reset; nothing is lost either way.
            log.warning("held_connection_release_failed", error=repr(exc))
