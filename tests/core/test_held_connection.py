"""``HeldConnection``: the group commit's writer keeps one pooled connection while batches
follow each other, and gives it back to the pool when they stop, when a use fails, when the
server has ended its session, and whenever someone else may be waiting for a connection (the
pool's every connection in use, or the pool closing). Against a real PostgreSQL."""

import asyncio

import asyncpg
import pytest

from helpers import eventually
from queue_core.db import HeldConnection, create_pool
from queue_core.errors import DatabaseUnavailableError
from queue_core.jobs import Idempotency, NewJob
from queue_core.queue import WRITER_IDLE_S, Queue

IDLE_S = 0.2


async def backend_pid(held: HeldConnection) -> int:
    async with held as conn:
        pid: int = await conn.fetchval("SELECT pg_backend_pid()")
    return pid


async def test_uses_in_a_row_share_one_connection_given_back_once_idle(db_url: str) -> None:
    pool = await create_pool(db_url, max_size=2)
    held = HeldConnection(pool, idle_s=IDLE_S)
    try:
        pids = {await backend_pid(held) for _ in range(20)}
        assert len(pids) == 1
        assert held.held
        assert pool.get_idle_size() == 0  # taken from the pool, not borrowed per use

        async def given_back() -> bool:
            return not held.held and pool.get_idle_size() == 1

        await eventually(given_back, timeout_s=IDLE_S * 20)
        # Reused from the pool afterwards: the same session, no new connection.
        assert await backend_pid(held) in pids
    finally:
        await asyncio.wait_for(pool.close(), timeout=IDLE_S * 20)


async def test_a_use_kept_busy_past_the_idle_time_keeps_its_connection(db_url: str) -> None:
    pool = await create_pool(db_url, max_size=2)
    held = HeldConnection(pool, idle_s=IDLE_S)
    try:
        first = await backend_pid(held)
        async with held as conn:  # the idle timer fires during this use
            await conn.execute(f"SELECT pg_sleep({IDLE_S * 2})")
            assert held.held
        assert await backend_pid(held) == first
    finally:
        await pool.close()


async def test_a_use_that_raises_gives_the_connection_back_at_once(db_url: str) -> None:
    pool = await create_pool(db_url, max_size=2)
    held = HeldConnection(pool, idle_s=60.0)  # only the failure can give it back here
    try:
        with pytest.raises(asyncpg.DivisionByZeroError):
            async with held as conn:
                await conn.fetchval("SELECT 1 / 0")
        assert not held.held
        assert pool.get_idle_size() == 1  # back before the use's error reached its caller
        assert await backend_pid(held) > 0  # the next use takes one again
    finally:
        await held_released_then_close(held, pool)


async def test_a_connection_whose_session_the_server_ended_is_replaced(db_url: str) -> None:
    pool = await create_pool(db_url, max_size=2)
    held = HeldConnection(pool, idle_s=60.0)
    admin = await asyncpg.connect(db_url)
    try:
        pid = await backend_pid(held)
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)

        async def session_gone() -> bool:
            return not await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid
            )

        await eventually(session_gone)
        await asyncio.sleep(0.05)  # the client reads the close, idle
        assert await backend_pid(held) != pid  # no error: a fresh connection
    finally:
        await admin.close()
        await held_released_then_close(held, pool)


async def held_released_then_close(held: HeldConnection, pool: asyncpg.Pool) -> None:
    """Closing the pool waits for the held connection up to its idle time; with a long one, the
    test gives it back by failing a use instead."""
    with pytest.raises(RuntimeError):
        async with held:
            raise RuntimeError("give it back")
    await asyncio.wait_for(pool.close(), timeout=10)


async def test_two_uses_at_once_are_refused(db_url: str) -> None:
    pool = await create_pool(db_url, max_size=2)
    held = HeldConnection(pool, idle_s=IDLE_S)
    try:
        async with held:
            with pytest.raises(RuntimeError, match="one use at a time"):
                async with held:
                    pass
    finally:
        await pool.close()


async def test_closing_the_pool_after_enqueues_waits_no_longer_than_the_idle_time(
    db_url: str,
) -> None:
    pool = await create_pool(db_url, max_size=2)
    queue = Queue(pool)
    for i in range(5):
        await queue.enqueue(NewJob(type="noop", payload={"i": i}))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(pool.close(), timeout=10)
    assert loop.time() - started < WRITER_IDLE_S + 1.0


@pytest.mark.parametrize("keyed", [False, True], ids=["plain", "idempotency-key"])
async def test_enqueues_in_a_stream_leave_a_one_connection_pool_to_others_in_turn(
    db_url: str, *, keyed: bool
) -> None:
    """With every connection of the pool in use, a kept one would never rejoin the line of
    those waiting: each use gives it back, as acquiring per use did. Both group commits."""
    pool = await create_pool(db_url, max_size=1)
    queue = Queue(pool)
    stop = asyncio.Event()
    enqueued = 0

    def job(i: int) -> NewJob:
        if not keyed:
            return NewJob(type="noop", payload={"i": i})
        key = Idempotency(key=f"stream-{i}", fingerprint=b"f" * 32, ttl_s=3600.0)
        return NewJob(type="noop", payload={"i": i}, idempotency=key)

    async def stream() -> None:
        nonlocal enqueued
        while not stop.is_set():
            await queue.enqueue(job(enqueued))
            enqueued += 1
            await asyncio.sleep(0.01)  # a gap far below the writer's idle time

    producer = asyncio.create_task(stream())
    try:
        await asyncio.sleep(0.2)
        for _ in range(5):  # each waits its turn behind at most one enqueue
            assert await asyncio.wait_for(pool.fetchval("SELECT 1"), timeout=5) == 1
            await asyncio.sleep(0.05)
        assert enqueued > 0
    finally:
        stop.set()
        await producer
        await asyncio.wait_for(pool.close(), timeout=10)


async def test_the_pool_closes_while_enqueues_go_on(db_url: str) -> None:
    pool = await create_pool(db_url, max_size=2)
    queue = Queue(pool)
    refused = asyncio.Event()

    async def stream() -> None:
        while True:
            try:
                await queue.enqueue(NewJob(type="noop", payload={}))
            except DatabaseUnavailableError:  # the pool is closing
                refused.set()
                return
            await asyncio.sleep(0.005)

    producer = asyncio.create_task(stream())
    await asyncio.sleep(0.2)
    await asyncio.wait_for(pool.close(), timeout=5)  # no wait for the writer to go idle
    await asyncio.wait_for(producer, timeout=5)
    assert refused.is_set()
