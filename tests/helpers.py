"""Shared test tools: waiting on conditions with a deadline, and running our real processes."""

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx

from queue_core.queue_events import RepairReason

BIN = Path(sys.executable).parent

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout_s: float = 10.0, interval_s: float = 0.02
) -> None:
    """Poll ``check`` until it is true; fail loudly at the deadline. Never sleep-and-hope."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(interval_s)


def wait_until(
    check: Callable[[], bool], *, timeout_s: float = 15.0, interval_s: float = 0.05, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what or 'condition'} not met within {timeout_s} s")
        time.sleep(interval_s)


class Proc:
    """One of our console scripts as a real child process, its output in a log file."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            [str(BIN / args[0]), *args[1:]],
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout_s: float) -> int:
        return self.popen.wait(timeout=timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()


def run_script(
    args: list[str], env: Mapping[str, str], timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


class TcpProxy:
    """A loopback TCP proxy in front of PostgreSQL that a test can cut and restore, to play a
    database outage against any server (ours, a container or an external one).

    It runs its own event loop in a thread, so sync and async tests alike can use it.

    ``hide_hangups``: when the server closes a connection, the client is not told; it keeps
    its socket, as behind a NAT or proxy that lost track of the connection. Whatever the
    server said before closing (a FATAL error) still reaches the client.
    """

    def __init__(self, target_host: str, target_port: int, *, hide_hangups: bool = False) -> None:
        self._target = (target_host, target_port)
        self._hide_hangups = hide_hangups
        self.hangups_hidden = 0  # server closes the clients were not told of
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.up()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, hang_up: bool = True
    ) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if hang_up:
                writer.close()
            else:
                self.hangups_hidden += 1

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self._target)
        except OSError:
            client_w.close()
            return
        self._writers.update((client_w, server_w))
        await asyncio.gather(
            self._pipe(client_r, server_w),
            self._pipe(server_r, client_w, hang_up=not self._hide_hangups),
        )
        client_w.close()  # a hangup hidden until the client itself hung up
        self._writers.difference_update((client_w, server_w))

    async def _up(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port or 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()  # like a crashed server: connections reset, not closed
        self._writers.clear()

    def up(self) -> None:
        """Accept connections again, on the same port."""
        self._call(self._up())

    def down(self) -> None:
        """Refuse new connections and reset every open one."""
        self._call(self._down())

    def url(self, database_url: str) -> str:
        """``database_url`` rerouted through this proxy."""
        parts = urlsplit(database_url)
        netloc = parts.netloc.rsplit("@", 1)
        userinfo = f"{netloc[0]}@" if len(netloc) == 2 else ""
        return urlunsplit(parts._replace(netloc=f"{userinfo}127.0.0.1:{self.port}"))

    def close(self) -> None:
        self._call(self._down())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()


def host_port(database_url: str) -> tuple[str, int]:
    parts = urlsplit(database_url)
    return parts.hostname or "127.0.0.1", parts.port or 5432


class RecordedQueueEvents:
    """A :class:`queue_core.queue_events.QueueEvents` that remembers what it was told."""

    def __init__(self) -> None:
        self.keyed_turn_timeouts = 0
        self.unsettled: list[int] = []
        self.repaired: list[tuple[str, int]] = []

    def keyed_claim_turn_timed_out(self) -> None:
        self.keyed_turn_timeouts += 1

    def dependants_not_settled(self, jobs: int) -> None:
        self.unsettled.append(jobs)

    def dependants_repaired(self, reason: RepairReason, jobs: int) -> None:
        self.repaired.append((reason, jobs))
