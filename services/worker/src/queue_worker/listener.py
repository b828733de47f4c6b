"""LISTEN for new-job notifications on a dedicated connection, and keep it alive.

A notification only shortens the wait before the next claim; the claim loop also polls, so a
lost connection or a missed notification delays a job by at most one poll interval. The listener
is a supervised service (supervisor.py): reconnecting is the supervisor's restart, with the
backoff every service shares.
"""

import asyncio
from collections.abc import Callable, Collection

import asyncpg

from queue_core.db import CONNECTION_ERRORS, normalize_database_url
from queue_core.errors import DatabaseUnavailableError
from queue_core.fleet import PAUSES_CHANNEL
from queue_core.log import get_logger

CHANNEL = "queue_jobs"
KEEPALIVE_S = 15.0
KEEPALIVE_TIMEOUT_S = 5.0

log = get_logger("queue_worker.listener")


class Listener:
    def __init__(
        self,
        database_url: str,
        queues: Collection[str],
        on_notify: Callable[[], None],
        on_reconnect: Callable[[], None] = lambda: None,
        on_pause_change: Callable[[], None] | None = None,
    ) -> None:
        """``on_pause_change``: called when a queue is paused or resumed (channel
        queue_pauses), and on every (re)connection, since one may have been missed meanwhile."""
        self._on_reconnect = on_reconnect
        self._on_pause_change = on_pause_change
        self._url = normalize_database_url(database_url)
        self._queues = frozenset(queues)
        self._on_notify = on_notify
        self.connected = False
        self.name = "listener"
        self.turns = 0  # connections made: the supervisor's measure of progress
        self._had_connected = False

    def _handle(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        if payload in self._queues:
            self._on_notify()

    def _handle_pause(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        if payload in self._queues and self._on_pause_change is not None:
            self._on_pause_change()

    async def run(self) -> None:
        """Stay subscribed until cancelled. A lost or refused connection raises
        DatabaseUnavailableError: the supervisor backs off and runs this again, which
        reconnects."""
        lost = asyncio.Event()
        conn: asyncpg.Connection | None = None
        try:
            try:
                conn = await asyncpg.connect(
                    self._url, timeout=5.0, server_settings={"application_name": "queue-worker"}
                )
                conn.add_termination_listener(lambda _c: lost.set())
                await conn.add_listener(CHANNEL, self._handle)
                if self._on_pause_change is not None:
                    await conn.add_listener(PAUSES_CHANNEL, self._handle_pause)
            except CONNECTION_ERRORS as exc:
                raise DatabaseUnavailableError(exc) from exc
            self.connected = True
            self.turns += 1
            if self._had_connected:
                self._on_reconnect()
            self._had_connected = True
            log.debug("listener_connected")
            # Jobs enqueued while we were not listening: look now rather than at the next poll.
            self._on_notify()
            if self._on_pause_change is not None:
                self._on_pause_change()
            await self._watch(conn, lost)
            raise DatabaseUnavailableError(ConnectionResetError("listener connection lost"))
        finally:
            self.connected = False
            if conn is not None and not conn.is_closed():
                conn.terminate()

    @staticmethod
    async def _watch(conn: asyncpg.Connection, lost: asyncio.Event) -> None:
        """Return when the connection is gone. A closed socket is noticed at once; a silent one
        (a dead peer behind a NAT or a proxy) by a periodic round trip."""
        while not lost.is_set():
            try:
                async with asyncio.timeout(KEEPALIVE_S):
                    await lost.wait()
            except TimeoutError:
                try:
                    await conn.fetchval("SELECT 1", timeout=KEEPALIVE_TIMEOUT_S)
                except CONNECTION_ERRORS:
                    return
                except asyncpg.PostgresError:
                    return
