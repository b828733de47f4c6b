"""NOTIFY payloads seen from a connection of their own, for the queue-level tests."""

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

CHANNEL = "queue_jobs"
NOTIFY_TIMEOUT_S = 5.0


@pytest.fixture(name="notifications")
async def fx_notifications(db_url: str) -> AsyncIterator["asyncio.Queue[object]"]:
    """Payloads of ``queue_jobs`` notifications, received on a connection of their own."""
    received: asyncio.Queue[object] = asyncio.Queue()

    def on_notify(_conn: object, _pid: int, _channel: str, payload: object, /) -> None:
        received.put_nowait(payload)

    conn = await asyncpg.connect(db_url)
    try:
        await conn.add_listener(CHANNEL, on_notify)
        yield received
    finally:
        await conn.close()


async def next_notification(received: "asyncio.Queue[object]") -> object:
    async with asyncio.timeout(NOTIFY_TIMEOUT_S):
        return await received.get()
