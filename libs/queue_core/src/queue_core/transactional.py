"""Enqueueing inside the caller's own transaction: the job exists if and only if the business
transaction commits (the transactional outbox, without the outbox).

    async with engine.begin() as conn:                      # or an asyncpg connection's
        await conn.execute(insert(orders).values(...))      # conn.transaction(), or an
        await enqueue_in(conn, NewJob(type="ship_order",    # AsyncSession
                                      payload={"order": 42}))
    # committed: the order and its job, together; rolled back: neither

``conn`` may be an asyncpg ``Connection`` or a SQLAlchemy ``AsyncConnection`` or
``AsyncSession`` (on the asyncpg driver). The statements are the queue's own (``enqueue_many``
of ``queries.sql``, and ``queue_core.keyed`` for jobs with keys), so a job enqueued here is
exactly one enqueued through ``Queue`` or the API. The NOTIFY that wakes the workers is sent in
the same transaction, and PostgreSQL delivers it at commit only: no worker is woken for a job
it cannot see, and a rollback wakes nobody.

Nothing here commits, rolls back or retries: the transaction is the caller's. Outside a
transaction (an asyncpg connection in autocommit, or a SQLAlchemy one with
``isolation_level="AUTOCOMMIT"``) a call that runs more than one statement (jobs with unique,
idempotency or concurrency keys, or dependencies) runs them in a transaction of its own,
committed before it returns, so that the call is all or nothing there too; jobs without keys
are one statement anyway. Use READ COMMITTED, PostgreSQL's default, for jobs with keys (see
``queue_core.keyed``).
"""

from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from queue_core.db import translate_connection_errors
from queue_core.gated import enqueue_gated_all, is_gated
from queue_core.jobs import Enqueued, NewJob
from queue_core.keyed import AsyncpgDb, Db, Row, enqueue_all, is_keyed

Connection = asyncpg.Connection | AsyncConnection | AsyncSession


class _AlchemyDb:
    """:class:`~queue_core.keyed.Db` on a SQLAlchemy async connection: the statements go
    through ``exec_driver_sql``, so SQLAlchemy begins its transaction (it begins lazily, at the
    first statement) and the asyncpg dialect's ``$n`` parameters pass through unchanged."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def fetch(self, query: str, *args: object) -> Sequence[Row]:
        result = await self._conn.exec_driver_sql(query, args)
        return list(result.mappings().all())

    async def execute(self, query: str, *args: object) -> None:
        await self._conn.exec_driver_sql(query, args)


async def _db(conn: Any) -> Db:  # noqa: ANN401 - checked below, with a clear error
    if isinstance(conn, asyncpg.Connection):
        return AsyncpgDb(conn)
    if isinstance(conn, AsyncSession):
        conn = await conn.connection()  # the session's transaction (begun if need be)
    if isinstance(conn, AsyncConnection):
        if conn.dialect.driver != "asyncpg":
            raise TypeError(f"enqueue_in needs the asyncpg driver, not {conn.dialect.driver}")
        return _AlchemyDb(conn)
    raise TypeError(
        "enqueue_in takes an asyncpg Connection or a SQLAlchemy AsyncConnection or "
        f"AsyncSession, not {type(conn).__name__}"
    )


async def enqueue_in(conn: Connection, job: NewJob) -> Enqueued:
    """Enqueue ``job`` in ``conn``'s current transaction. Returns its id and what happened: a
    job with a unique or idempotency key may answer with the job holding the key
    (``queue_core.keyed``)."""
    (enqueued,) = await enqueue_many_in(conn, [job])
    return enqueued


async def enqueue_many_in(conn: Connection, jobs: Sequence[NewJob]) -> list[Enqueued]:
    """Enqueue ``jobs`` in ``conn``'s current transaction: those without keys in one
    statement, keyed ones one by one. One result per job, in order."""
    if not jobs:
        return []
    gated = any(is_gated(job) for job in jobs)  # limits per key, dependencies: queue_core.gated
    enqueue = enqueue_gated_all if gated else enqueue_all
    if not gated and not any(is_keyed(job) for job in jobs):
        return await enqueue_all(await _db(conn), jobs)  # one statement, whatever the mode
    autocommit = await _autocommit_driver(conn)
    if autocommit is None:
        return await enqueue(await _db(conn), jobs)
    # Statements that must commit together: one by one, a dependant would commit before its
    # edges (and stay so when a dependency is unknown), waiting for nothing that would ever
    # count it down, and a batch refused for one job's key would keep the jobs before it.
    # BEGIN, COMMIT and the ROLLBACK of a lost connection are ours too: an outage there is a
    # TransientDatabaseError, as in every statement (asyncpg's own error, or its "connection
    # is closed" from the rollback hiding the statement's, otherwise).
    async with translate_connection_errors(), autocommit.transaction():
        return await enqueue(AsyncpgDb(autocommit), jobs)


async def _autocommit_driver(conn: Any) -> asyncpg.Connection | None:  # noqa: ANN401 - as _db
    """The asyncpg connection under ``conn`` when no transaction is open on it, each statement
    committing on its own: an asyncpg connection outside ``transaction()``, or a SQLAlchemy
    one with ``isolation_level="AUTOCOMMIT"``; else None."""
    if isinstance(conn, asyncpg.Connection):
        return None if conn.is_in_transaction() else conn
    if isinstance(conn, AsyncSession):
        conn = await conn.connection()
    if isinstance(conn, AsyncConnection):
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        if getattr(raw.dbapi_connection, "autocommit", False) and isinstance(
            driver, asyncpg.Connection
        ):
            return driver
    return None
