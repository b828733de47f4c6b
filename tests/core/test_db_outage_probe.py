"""The outage proxy itself: a cut really looks like a dead database to the queue."""

import pytest

from helpers import TcpProxy
from queue_core.db import create_pool
from queue_core.errors import DatabaseUnavailableError
from queue_core.queue import Queue


async def test_queue_reports_unavailable_while_cut_and_recovers_after(
    db_proxy: tuple[TcpProxy, str],
) -> None:
    proxy, url = db_proxy
    pool = await create_pool(url, connect_timeout_s=1.0)
    queue = Queue(pool)
    try:
        await queue.ping()
        proxy.down()
        with pytest.raises(DatabaseUnavailableError):
            await queue.ping()
        proxy.up()
        await queue.ping()
    finally:
        await pool.close()
