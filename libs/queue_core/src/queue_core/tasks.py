"""Handlers: the code a worker runs for each job type, and the registry that names them.

Register a handler with the :func:`task` decorator in any module, then list that module in the
worker's ``WORKER_TASKS``::

    from queue_core.tasks import JobContext, task

    @task("resize_image")
    async def resize_image(job: JobContext) -> None:
        ...  # job.payload is the JSON object posted with the job

Handlers may be ``async def`` (run on the worker's event loop) or plain ``def`` (run in a
thread, so blocking code does not stall other jobs). An attempt that outlives its timeout
(the job's ``timeout_s``, else the handler's, else ``WORKER_JOB_TIMEOUT_S``) is cancelled and
counts as a failure. A thread cannot be interrupted: a timed-out sync handler is recorded as
failed at once, but its thread runs on until the function returns.

A handler succeeds by returning and fails by raising; a failed attempt is retried with backoff
until the job's ``max_attempts``, unless the exception is a :class:`PermanentError`, which
fails the job at once. What it returns is stored as the job's result (JSON-serialisable,
bounded by ``WORKER_MAX_RESULT_BYTES``; None stores none). ``raise Snooze(seconds)`` runs the
job again later without spending an attempt. Delivery is at-least-once: a handler may run
again for the same job after a crash, so make it idempotent (``job.id`` is a stable key for
that).

A handler may also run on a schedule: ``@task("report", cron="0 * * * *", tz="Europe/Paris")``
or ``@task("ping", every_s=30)`` enqueues one job of its type at each tick, on ``queue`` with
``payload``, exactly once however many workers declare it (``queue_core.schedules``, which also
documents ``missed`` and ``grace_s``).
"""

import asyncio
import importlib
import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias, cast
from uuid import UUID

from queue_core.jobs import ClaimedJob
from queue_core.limits import MAX_SNOOZE_S
from queue_core.schedules import DEFAULT_GRACE_S, Missed, Schedule
from queue_core.states import DEFAULT_QUEUE


@dataclass(slots=True)  # one per job run: not frozen, whose __init__ costs four times as much
class JobContext:
    """What a handler receives: the job's identity and payload."""

    id: UUID
    type: str
    payload: dict[str, Any]
    queue: str
    attempt: int
    max_attempts: int

    @classmethod
    def of(cls, job: ClaimedJob) -> "JobContext":
        return cls(
            id=job.id,
            type=job.type,
            payload=job.payload,
            queue=job.queue,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
        )


# A handler's return value is the job's result: any JSON-serialisable value, or None for none.
AsyncHandler: TypeAlias = Callable[[JobContext], Awaitable[object]]
SyncHandler: TypeAlias = Callable[[JobContext], object]
Handler: TypeAlias = AsyncHandler | SyncHandler


class DuplicateTaskError(ValueError):
    pass


class PermanentError(Exception):
    """Raise it from a handler when retrying cannot help (a malformed payload, a rejected
    request): the job is failed at once instead of using its remaining attempts."""


def snooze_seconds(seconds: object) -> float:
    """``seconds`` as a Snooze's delay; TypeError or ValueError, saying why, if it is not one."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"Snooze takes a number of seconds, not {type(seconds).__name__}")
    if not 0 < seconds <= MAX_SNOOZE_S:  # also refuses NaN
        raise ValueError(f"Snooze seconds must be above 0 and at most {MAX_SNOOZE_S:g}")
    return float(seconds)


class Snooze(Exception):  # noqa: N818 - a request, not an error: `raise Snooze(60)`
    """Raise it from a handler to run the job again in ``seconds`` (0 < seconds <= a week)
    without spending an attempt: the job goes back to pending, due then. Nothing is added to
    its errors. A cancel requested meanwhile still cancels it."""

    def __init__(self, seconds: float) -> None:
        # Checked here, in the handler's own frame: a bad value fails the attempt with this
        # message, like any other error the handler raises. (The worker checks again.)
        self.seconds = snooze_seconds(seconds)
        super().__init__(f"snoozed for {seconds:g} s")


@dataclass(frozen=True, slots=True)
class Task:
    name: str
    handler: Handler
    is_async: bool
    timeout_s: float | None = None
    schedule: Schedule | None = None

    def run(self, job: JobContext) -> Awaitable[object]:
        """The handler's run, to await for its result: the handler's own coroutine, or a
        thread's for a plain ``def`` (no coroutine of our own around it: one frame fewer for
        every job)."""
        if self.is_async:
            return cast("AsyncHandler", self.handler)(job)
        return asyncio.to_thread(self.handler, job)


def _is_async(handler: Handler) -> bool:
    """True for ``async def`` functions and for objects whose ``__call__`` is one."""
    call = getattr(handler, "__call__", None)  # noqa: B004 - looking at __call__ itself
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)


def _describe(handler: Handler) -> str:
    name = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    return f"{getattr(handler, '__module__', '?')}.{name}"


class TaskRegistry:
    """Job type name → handler. One process-wide instance, :data:`registry`, is what
    :func:`task` fills and the worker reads; tests may build their own."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}

    def register(
        self,
        name: str,
        handler: Handler,
        *,
        timeout_s: float | None = None,
        schedule: Schedule | None = None,
    ) -> Task:
        if not name:
            raise ValueError("a task name must not be empty")
        if timeout_s is not None and not timeout_s > 0:  # also refuses NaN
            raise ValueError("timeout_s must be positive")
        existing = self._tasks.get(name)
        if existing is not None and existing.handler is not handler:
            raise DuplicateTaskError(
                f"task {name!r} is already registered by {_describe(existing.handler)}"
            )
        task_ = Task(
            name=name,
            handler=handler,
            is_async=_is_async(handler),
            timeout_s=timeout_s,
            schedule=schedule,
        )
        self._tasks[name] = task_
        return task_

    def task(  # noqa: PLR0913 - the schedule's options are keywords of the one decorator
        self,
        name: str | None = None,
        *,
        timeout_s: float | None = None,
        cron: str | None = None,
        every_s: float | None = None,
        tz: str = "UTC",
        missed: Missed = "once",
        grace_s: float = DEFAULT_GRACE_S,
        queue: str = DEFAULT_QUEUE,
        payload: dict[str, Any] | None = None,
    ) -> Callable[[Handler], Handler]:
        """Decorator: register the function as the handler of job type ``name`` (default: the
        function's own name). ``timeout_s`` bounds each attempt unless the job sets its own.
        With ``cron`` (in time zone ``tz``) or ``every_s``, also a schedule of that name that
        enqueues a job on ``queue`` with ``payload`` at each tick (``queue_core.schedules``).
        A bad schedule raises :class:`~queue_core.schedules.ScheduleError` at import.
        Returns the function unchanged."""

        def decorate(handler: Handler) -> Handler:
            task_name = name or handler.__name__
            schedule = None
            if cron is not None or every_s is not None:
                schedule = Schedule(
                    name=task_name,
                    cron=cron,
                    every_s=every_s,
                    tz=tz,
                    missed=missed,
                    grace_s=grace_s,
                    queue=queue,
                    payload=dict(payload or {}),
                )
            self.register(task_name, handler, timeout_s=timeout_s, schedule=schedule)
            return handler

        return decorate

    def get(self, name: str) -> Task | None:
        return self._tasks.get(name)

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def schedules(self) -> list[Schedule]:
        """The schedules declared with the handlers, by name."""
        return [t.schedule for _, t in sorted(self._tasks.items()) if t.schedule is not None]


registry = TaskRegistry()
task = registry.task


def load_task_modules(module_paths: Iterable[str]) -> None:
    """Import each module so that its ``@task`` decorators register their handlers."""
    for path in module_paths:
        importlib.import_module(path)
