"""A session PostgreSQL ends under a pooled connection whose socket stays open.

PostgreSQL sends a FATAL error, then closes the socket. A statement started on an idle
connection that has read the error but not yet the close (a moment, or as long as a NAT or
proxy keeps the client's side open) fails with asyncpg's ``InternalClientError``. The queue
must report that call as the outage it is, retried, not as a bug of ours: the worker's claim
loop would count a crash, and its completer would drop a batch of outcomes (their jobs run
again after their leases run out). Seen in the out-of-connections chaos scenario. The next
call must get a fresh connection, not the broken one."""

import asyncio

import asyncpg
import pytest

from helpers import TcpProxy, eventually, host_port
from queue_core.db import create_pool
from queue_core.errors import DatabaseUnavailableError
from queue_core.queue import Queue


async def test_a_connection_whose_session_ended_is_replaced_and_the_call_reported_as_an_outage(
    db_url: str,
) -> None:
    proxy = TcpProxy(*host_port(db_url), hide_hangups=True)
    pool = await create_pool(proxy.url(db_url), max_size=1)
    admin = await asyncpg.connect(db_url)
    queue = Queue(pool)
    try:
        pid = await pool.fetchval("SELECT pg_backend_pid()")
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)

        async def hangup_hidden() -> bool:
            return proxy.hangups_hidden == 1

        await eventually(hangup_hidden)  # the FATAL error was relayed, the close was not
        await asyncio.sleep(0.01)  # the pool's connection reads it, idle

        with pytest.raises(DatabaseUnavailableError) as raised:
            await queue.ping()
        assert isinstance(raised.value.__cause__, asyncpg.InternalClientError)

        await queue.ping()  # on a new connection, not the broken one again
        assert await pool.fetchval("SELECT pg_backend_pid()") != pid
    finally:
        await admin.close()
        pool.terminate()  # a graceful close would wait for hangups the proxy hides
        proxy.close()
