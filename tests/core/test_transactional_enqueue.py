"""Enqueueing inside the caller's transaction (queue_core.transactional): the job exists if and
only if the transaction commits, and its queue is woken at commit, on a plain asyncpg connection
and on SQLAlchemy's AsyncConnection and AsyncSession alike."""

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from uuid_utils.compat import uuid7

from core.notifications import CHANNEL, next_notification
from helpers import TcpProxy, eventually
from queue_core.db import sqlalchemy_url
from queue_core.errors import (
    DatabaseUnavailableError,
    IdempotencyKeyReusedError,
    InvalidJobError,
    UnknownDependencyError,
)
from queue_core.jobs import EnqueueOutcome, Idempotency, NewJob
from queue_core.transactional import enqueue_in, enqueue_many_in

ORDERS = "CREATE TABLE orders (id int PRIMARY KEY)"


class Rollback(Exception):  # noqa: N818 - a signal, not an error
    """Raised to leave a transaction block by rolling back."""


@pytest.fixture(name="conn")
async def fx_conn(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection, as an application has it (no queue_core codecs), and a
    business table to write in the same transaction as the job."""
    conn = await asyncpg.connect(db_url)
    await conn.execute(ORDERS)
    yield conn
    await conn.close()


@pytest.fixture(name="engine")
async def fx_engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(sqlalchemy_url(db_url))
    async with engine.begin() as conn:
        await conn.execute(text(ORDERS))
    yield engine
    await engine.dispose()


async def _jobs(pool: asyncpg.Pool) -> list[tuple[str, dict[str, object]]]:
    rows = await pool.fetch("SELECT type, payload FROM jobs ORDER BY id")
    return [(r["type"], r["payload"]) for r in rows]


async def _orders(pool: asyncpg.Pool) -> list[int]:
    return [r["id"] for r in await pool.fetch("SELECT id FROM orders ORDER BY id")]


async def _nothing_was_notified(pool: asyncpg.Pool, received: "asyncio.Queue[object]") -> None:
    """No wake-up came before now: a probe notified now is the next one to arrive."""
    await pool.execute("SELECT pg_notify($1, 'probe')", CHANNEL)
    assert await next_notification(received) == "probe"


async def _waits_on_a_lock(pool: asyncpg.Pool) -> bool:
    waiting: int = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return waiting > 0


def _ship(order: int, queue: str = "default") -> NewJob:
    return NewJob(type="ship_order", payload={"order": order}, queue=queue)


# -- asyncpg ----------------------------------------------------------------------------------


async def test_a_job_enqueued_in_a_committed_asyncpg_transaction_exists_and_wakes_at_commit(
    conn: asyncpg.Connection, pool: asyncpg.Pool, notifications: "asyncio.Queue[object]"
) -> None:
    async with conn.transaction():
        await conn.execute("INSERT INTO orders VALUES (42)")
        enqueued = await enqueue_in(conn, _ship(42, "shipping"))
        assert await _jobs(pool) == []  # not visible to others before the commit
        await _nothing_was_notified(pool, notifications)

    assert enqueued.outcome is EnqueueOutcome.CREATED
    assert await next_notification(notifications) == "shipping"
    assert await _jobs(pool) == [("ship_order", {"order": 42})]
    assert await _orders(pool) == [42]
    status = await pool.fetchval("SELECT status FROM jobs WHERE id = $1", enqueued.id)
    assert status == "pending"


async def test_a_rolled_back_asyncpg_transaction_leaves_no_job_and_wakes_nobody(
    conn: asyncpg.Connection, pool: asyncpg.Pool, notifications: "asyncio.Queue[object]"
) -> None:
    async def order_then_fail() -> None:
        async with conn.transaction():
            await conn.execute("INSERT INTO orders VALUES (42)")
            await enqueue_many_in(conn, [_ship(42), _ship(43)])
            raise Rollback

    with pytest.raises(Rollback):
        await order_then_fail()

    await _nothing_was_notified(pool, notifications)
    assert await _jobs(pool) == []
    assert await _orders(pool) == []


async def test_a_unique_job_in_a_transaction_waits_for_the_other_transaction_holding_its_key(
    db_url: str, pool: asyncpg.Pool
) -> None:
    first, second = await asyncpg.connect(db_url), await asyncpg.connect(db_url)
    try:
        for commit_first, expected in ((False, EnqueueOutcome.CREATED), (True, None)):
            await pool.execute("DELETE FROM jobs")
            tx = first.transaction()
            await tx.start()
            held = await enqueue_in(first, NewJob(type="t", payload={"a": 1}, unique_key="u"))
            async with second.transaction():
                # Blocks on the first transaction's uncommitted row until it ends.
                racing = asyncio.create_task(
                    enqueue_in(second, NewJob(type="t", payload={"a": 2}, unique_key="u"))
                )
                await eventually(lambda: _waits_on_a_lock(pool))
                assert not racing.done()
                await (tx.commit() if commit_first else tx.rollback())
                result = await racing
            if expected is None:  # the first committed: the second gets its job
                assert (result.id, result.outcome) == (held.id, EnqueueOutcome.DUPLICATE)
            else:  # the first rolled back: the key was free after all
                assert result.outcome is expected
                assert result.id != held.id
            assert await pool.fetchval("SELECT count(*) FROM jobs") == 1
    finally:
        await first.close()
        await second.close()


# -- SQLAlchemy ---------------------------------------------------------------------------------


async def test_a_job_enqueued_on_a_sqlalchemy_connection_commits_with_it(
    engine: AsyncEngine, pool: asyncpg.Pool, notifications: "asyncio.Queue[object]"
) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO orders VALUES (7)"))
        enqueued = await enqueue_in(conn, _ship(7, "shipping"))
        await _nothing_was_notified(pool, notifications)
        assert await _jobs(pool) == []

    assert await next_notification(notifications) == "shipping"
    assert await _jobs(pool) == [("ship_order", {"order": 7})]
    assert await pool.fetchval("SELECT id FROM jobs") == enqueued.id
    assert await _orders(pool) == [7]


async def test_a_rolled_back_sqlalchemy_connection_leaves_no_job(
    engine: AsyncEngine, pool: asyncpg.Pool, notifications: "asyncio.Queue[object]"
) -> None:
    async with engine.connect() as conn:
        await conn.begin()
        await conn.execute(text("INSERT INTO orders VALUES (7)"))
        await enqueue_in(conn, _ship(7))
        await conn.rollback()

    await _nothing_was_notified(pool, notifications)
    assert await _jobs(pool) == []
    assert await _orders(pool) == []


async def test_a_job_is_enqueued_in_a_sqlalchemy_sessions_transaction(
    engine: AsyncEngine, pool: asyncpg.Pool, notifications: "asyncio.Queue[object]"
) -> None:
    # The session's first statement is ours: the session must begin its transaction for it.
    async def order_then_fail() -> None:
        async with AsyncSession(engine) as session, session.begin():
            await enqueue_in(session, _ship(1))
            await session.execute(text("INSERT INTO orders VALUES (1)"))
            raise Rollback

    with pytest.raises(Rollback):
        await order_then_fail()
    await _nothing_was_notified(pool, notifications)
    assert await _jobs(pool) == []

    async with AsyncSession(engine) as session, session.begin():
        await enqueue_in(session, _ship(2))
        await enqueue_in(session, NewJob(type="digest", payload={"d": 1}, unique_key="daily"))
        duplicate = await enqueue_in(
            session, NewJob(type="digest", payload={"d": 1}, unique_key="daily")
        )
        await session.execute(text("INSERT INTO orders VALUES (2)"))

    assert duplicate.outcome is EnqueueOutcome.DUPLICATE
    assert await next_notification(notifications) == "default"
    assert await _jobs(pool) == [("ship_order", {"order": 2}), ("digest", {"d": 1})]
    assert await _orders(pool) == [2]


async def test_enqueue_in_refuses_what_is_not_a_connection() -> None:
    with pytest.raises(TypeError, match="asyncpg Connection or a SQLAlchemy"):
        await enqueue_in(object(), _ship(1))  # type: ignore[arg-type]


UNSTORABLE = [{"ratio": math.nan}, {"name": "a\x00b"}, {"path": "caf\udce9"}, {"tags": {1}}]


@pytest.mark.parametrize("payload", UNSTORABLE)
async def test_a_payload_the_database_cannot_store_is_refused_and_the_transaction_goes_on(
    conn: asyncpg.Connection, pool: asyncpg.Pool, payload: dict[str, Any]
) -> None:
    """Such a payload reached PostgreSQL, whose error aborted the caller's whole transaction
    (every statement after it refused until the rollback). It is refused before any statement
    now, with InvalidJobError."""
    async with conn.transaction():
        await conn.execute("INSERT INTO orders VALUES (1)")
        with pytest.raises(InvalidJobError, match="payload"):
            await enqueue_in(conn, NewJob(type="ship_order", payload=payload))
        await enqueue_in(conn, _ship(1))

    assert await _orders(pool) == [1]
    assert await _jobs(pool) == [("ship_order", {"order": 1})]


@pytest.mark.parametrize("payload", UNSTORABLE)
async def test_a_payload_the_database_cannot_store_is_refused_on_sqlalchemy_too(
    engine: AsyncEngine, pool: asyncpg.Pool, payload: dict[str, Any]
) -> None:
    """On SQLAlchemy the database's refusal also came back as SQLAlchemy's own DBAPIError,
    not the InvalidJobError the same job gets through Queue."""
    async with engine.begin() as alchemy:
        await alchemy.execute(text("INSERT INTO orders VALUES (2)"))
        with pytest.raises(InvalidJobError, match="payload"):
            await enqueue_in(alchemy, NewJob(type="ship_order", payload=payload))
        await enqueue_in(alchemy, _ship(2))

    assert await _orders(pool) == [2]
    assert await _jobs(pool) == [("ship_order", {"order": 2})]


# -- outside a transaction ---------------------------------------------------------------------


async def test_a_dependant_enqueued_in_autocommit_is_all_or_nothing(
    conn: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    """One statement at a time, the dependant committed before its parents were checked: an
    unknown one left it waiting for ever, with no edge."""
    with pytest.raises(UnknownDependencyError):
        await enqueue_in(conn, NewJob(type="child", payload={}, depends_on=(uuid7(),)))
    assert await _jobs(pool) == []
    assert not conn.is_in_transaction()

    parent = await enqueue_in(conn, _ship(1))
    child = await enqueue_in(conn, NewJob(type="child", payload={}, depends_on=(parent.id,)))
    row = await pool.fetchrow("SELECT status, waiting_for FROM jobs WHERE id = $1", child.id)
    assert row is not None
    assert (row["status"], row["waiting_for"]) == ("pending", 1)  # committed, with its edge
    edges = await pool.fetchval("SELECT count(*) FROM job_dependencies WHERE job_id = $1", child.id)
    assert edges == 1


async def test_a_dependant_enqueued_on_a_sqlalchemy_autocommit_connection_is_all_or_nothing(
    engine: AsyncEngine, pool: asyncpg.Pool
) -> None:
    async with engine.connect() as alchemy:
        autocommit = await alchemy.execution_options(isolation_level="AUTOCOMMIT")
        with pytest.raises(UnknownDependencyError):
            await enqueue_in(autocommit, NewJob(type="child", payload={}, depends_on=(uuid7(),)))
    assert await _jobs(pool) == []


async def test_an_outage_in_an_autocommit_dependants_own_transaction_is_a_transient_error(
    db_proxy: tuple[TcpProxy, str], pool: asyncpg.Pool
) -> None:
    """The transaction enqueue_many_in opens is its own: its BEGIN, and the rollback after a
    statement lost the connection, failed with asyncpg's errors (the rollback's "connection is
    closed" hiding the statement's DatabaseUnavailableError), which callers do not retry."""
    proxy, url = db_proxy
    conn = await asyncpg.connect(url)
    parent = await enqueue_in(conn, _ship(1))
    try:
        async with pool.acquire() as holder, holder.transaction():
            await holder.execute("SELECT FROM jobs WHERE id = $1 FOR UPDATE", parent.id)
            child = NewJob(type="child", payload={}, depends_on=(parent.id,))
            enqueue = asyncio.create_task(enqueue_in(conn, child))
            await eventually(lambda: _waits_on_a_lock(pool))  # for the parent's lock
            proxy.down()
            with pytest.raises(DatabaseUnavailableError):
                await enqueue
        with pytest.raises(DatabaseUnavailableError):  # now at BEGIN
            await enqueue_in(conn, child)
    finally:
        conn.terminate()
    assert await pool.fetchval("SELECT count(*) FROM jobs WHERE type = 'child'") == 0


async def test_a_batch_refused_for_one_jobs_key_in_autocommit_keeps_none_of_its_jobs(
    conn: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    """One statement at a time, the jobs without keys committed before a keyed one was
    refused: the call raised, yet some of its jobs would run."""
    key = Idempotency(key="order-42", fingerprint=b"first", ttl_s=3600)
    await enqueue_in(conn, NewJob(type="ship_order", payload={}, idempotency=key))
    reused = Idempotency(key="order-42", fingerprint=b"other", ttl_s=3600)

    with pytest.raises(IdempotencyKeyReusedError):
        await enqueue_many_in(
            conn, [_ship(1), NewJob(type="ship_order", payload={}, idempotency=reused)]
        )
    assert await _jobs(pool) == [("ship_order", {})]
    assert not conn.is_in_transaction()
