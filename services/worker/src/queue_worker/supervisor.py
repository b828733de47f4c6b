"""One supervisor for every long-running loop of the worker, and one policy for all of them.

A service (the claim loop, the completer, the heartbeat, the listener, the rescuer) has a
``name``, a ``turns`` counter it bumps after each unit of work that succeeded, and a ``run()``
that works until cancelled, or returns when its work is over (the claim loop, on stop). The
supervisor runs each in a task of its own, as River's ``startstop`` services are run, and when
``run()`` raises:

- ``TransientDatabaseError`` (connection lost, deadlock, serialization failure): one warning
  line, counted as ``kind="transient"``, then ``run()`` again after the shared backoff
  (``queue_core.retry.TRANSIENT_RETRY``). The database comes back; the pod is fine.
- anything else: one error line (service, error type, traceback; the renderers never show frame
  locals, so no payload reaches the log), counted as ``kind="crash"``, then ``run()`` again
  after the same backoff.
- ``FAILING_AFTER_CRASHES`` crashes in a row without a turn in between: the service is
  *failing*, and ``/healthz`` answers 503 naming it so the orchestrator replaces the pod. It is
  still restarted meanwhile, and its next turn clears the state.

Nothing ends silently: a service's task ends only when its ``run()`` returns or it is stopped.
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from queue_core.errors import TransientDatabaseError
from queue_core.log import get_logger
from queue_core.retry import TRANSIENT_RETRY, Backoff
from queue_worker.events import NoEvents, WorkerEvents

log = get_logger("queue_worker.supervisor")

# Five crashes in a row take about 3 s of backoff (0.1 + 0.2 + 0.4 + 0.8 + 1.6 s, jittered):
# enough to tell a loop that keeps failing from one bad moment, and short enough that the
# liveness probe (failureThreshold times periodSeconds) replaces the pod within a minute.
FAILING_AFTER_CRASHES = 5


class Service(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def turns(self) -> int:
        """Units of work done so far; a crash with none since the last one makes a streak."""

    async def run(self) -> None: ...


@dataclass(slots=True)
class LoopService:
    """A service made of a coroutine function and a way to read its progress."""

    name: str
    loop: Callable[[], Awaitable[None]]
    progress: Callable[[], int]

    @property
    def turns(self) -> int:
        return self.progress()

    async def run(self) -> None:
        await self.loop()


@dataclass(slots=True)
class _Supervised:
    service: Service
    task: asyncio.Task[None] | None = None
    failures: int = 0  # since the service last made a turn: the backoff's attempt number
    crashes: int = 0  # of those, the non-transient ones
    turns_seen: int = 0
    retry_now: asyncio.Event = field(default_factory=asyncio.Event)


class Supervisor:
    def __init__(
        self,
        services: Sequence[Service],
        *,
        events: WorkerEvents | None = None,
        backoff: Backoff = TRANSIENT_RETRY,
        failing_after_crashes: int = FAILING_AFTER_CRASHES,
    ) -> None:
        self._events: WorkerEvents = events or NoEvents()
        self._backoff = backoff
        self._failing_after = failing_after_crashes
        self._services = {service.name: _Supervised(service) for service in services}
        if len(self._services) != len(services):
            raise ValueError("service names must be unique")

    def start(self) -> None:
        """Start every service not running yet (starting twice starts nothing twice)."""
        for name, supervised in self._services.items():
            if supervised.task is None:
                supervised.task = asyncio.create_task(
                    self._supervise(supervised), name=f"service:{name}"
                )

    async def stop(self) -> None:
        """Stop every service and wait for them. Harmless to call again, or before start."""
        tasks = [s.task for s in self._services.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def finished(self, name: str) -> None:
        """Wait until the service's ``run()`` returns (it is not restarted after that)."""
        task = self._services[name].task
        if task is None:
            raise RuntimeError(f"service {name!r} was not started")
        await asyncio.shield(task)

    def retry_now(self, name: str) -> None:
        """Cut short the service's backoff, if it is in one (e.g. the claim loop on stop)."""
        self._services[name].retry_now.set()

    def failing(self) -> list[str]:
        """Services that crashed ``failing_after_crashes`` times in a row without a turn.
        Read from the side port's thread: plain int reads, which the GIL keeps whole."""
        return [
            name
            for name, s in self._services.items()
            if s.crashes >= self._failing_after and s.service.turns == s.turns_seen
        ]

    async def _supervise(self, supervised: _Supervised) -> None:
        service = supervised.service
        name = service.name
        while True:
            self._events.service_up(name, up=True)
            try:
                await service.run()
            except TransientDatabaseError as exc:
                delay = self._failed(supervised, crashed=False)
                log.warning(
                    "service_retrying", service=name, error=str(exc), retry_in_s=round(delay, 3)
                )
            except Exception as exc:  # the policy: log, count, restart
                delay = self._failed(supervised, crashed=True)
                log.exception(
                    "service_crashed",
                    service=name,
                    error_type=type(exc).__name__,
                    crashes_in_a_row=supervised.crashes,
                    retry_in_s=round(delay, 3),
                )
                if supervised.crashes == self._failing_after:
                    log.error(  # noqa: TRY400 - the traceback is on the line just logged
                        "service_failing", service=name, crashes_in_a_row=supervised.crashes
                    )
            else:
                return  # its work is over
            finally:
                self._events.service_up(name, up=False)
            supervised.retry_now.clear()
            try:
                async with asyncio.timeout(delay):
                    await supervised.retry_now.wait()
            except TimeoutError:
                pass
            self._events.service_restarted(name)

    def _failed(self, supervised: _Supervised, *, crashed: bool) -> float:
        """Count a failure; return how long to wait before the restart."""
        turns = supervised.service.turns
        if turns != supervised.turns_seen:  # it did some work since: a new streak
            supervised.turns_seen = turns
            supervised.failures = supervised.crashes = 0
        supervised.failures += 1
        if crashed:
            supervised.crashes += 1
        self._events.service_failed(supervised.service.name, "crash" if crashed else "transient")
        return self._backoff.delay(supervised.failures)
