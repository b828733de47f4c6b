"""TaskRegistry: naming handlers, refusing clashes, and where each kind of handler runs."""

import math
import threading
import uuid

import pytest

from queue_core.tasks import DuplicateTaskError, JobContext, TaskRegistry


def _context(type_: str = "t") -> JobContext:
    return JobContext(
        id=uuid.uuid4(), type=type_, payload={"k": "v"}, queue="default", attempt=1, max_attempts=3
    )


def test_the_decorator_registers_under_the_function_name() -> None:
    registry = TaskRegistry()

    @registry.task()
    async def resize_image(_job: JobContext) -> None:
        pass

    task = registry.get("resize_image")
    assert task is not None
    assert task.handler is resize_image
    assert task.is_async
    assert registry.names() == ["resize_image"]


def test_the_decorator_registers_under_an_explicit_name_and_returns_the_function() -> None:
    registry = TaskRegistry()

    def send(_job: JobContext) -> None:
        pass

    decorated = registry.task("send_email")(send)

    assert decorated is send
    task = registry.get("send_email")
    assert task is not None
    assert task.handler is send
    assert not task.is_async
    assert registry.get("send") is None


async def _noop(_job: JobContext) -> None:
    pass


def test_names_are_sorted_and_unknown_names_are_none() -> None:
    registry = TaskRegistry()
    for name in ("b", "c", "a"):
        registry.register(name, _noop)

    assert registry.names() == ["a", "b", "c"]
    assert registry.get("missing") is None


def test_registering_the_same_function_again_is_harmless() -> None:
    registry = TaskRegistry()

    async def handler(_job: JobContext) -> None:
        pass

    registry.register("h", handler)
    registry.register("h", handler)

    assert registry.names() == ["h"]


def test_a_second_function_under_a_taken_name_is_refused() -> None:
    registry = TaskRegistry()

    @registry.task("dup")
    async def first(_job: JobContext) -> None:
        pass

    async def second(_job: JobContext) -> None:
        pass

    with pytest.raises(DuplicateTaskError, match=r"'dup' is already registered by .*first"):
        registry.task("dup")(second)

    task = registry.get("dup")
    assert task is not None
    assert task.handler is first


def test_a_name_taken_by_a_callable_object_is_refused_as_a_duplicate() -> None:
    """Any callable is a handler, objects included; the clash is still a DuplicateTaskError
    (an object has no ``__qualname__`` for the message to name)."""

    class Sender:
        def __call__(self, _job: JobContext) -> None:
            pass

    registry = TaskRegistry()
    registry.register("send", Sender())

    with pytest.raises(DuplicateTaskError, match="'send' is already registered"):
        registry.register("send", _noop)


def test_an_empty_name_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        TaskRegistry().register("", _noop)


async def test_a_sync_handler_runs_in_a_thread() -> None:
    registry = TaskRegistry()
    seen: list[tuple[int, JobContext]] = []

    @registry.task("blocking")
    def blocking(job: JobContext) -> None:
        seen.append((threading.get_ident(), job))

    task = registry.get("blocking")
    assert task is not None
    job = _context("blocking")
    await task.run(job)

    assert seen == [(seen[0][0], job)]
    assert seen[0][0] != threading.get_ident()


async def test_an_async_handler_runs_on_the_event_loop() -> None:
    registry = TaskRegistry()
    seen: list[int] = []

    @registry.task("on_loop")
    async def on_loop(_job: JobContext) -> None:
        seen.append(threading.get_ident())

    task = registry.get("on_loop")
    assert task is not None
    await task.run(_context("on_loop"))

    assert seen == [threading.get_ident()]


async def test_a_handler_error_propagates_from_run() -> None:
    registry = TaskRegistry()

    @registry.task("sync_boom")
    def sync_boom(_job: JobContext) -> None:
        raise KeyError("sync")

    @registry.task("async_boom")
    async def async_boom(_job: JobContext) -> None:
        raise KeyError("async")

    for name in ("sync_boom", "async_boom"):
        task = registry.get(name)
        assert task is not None
        with pytest.raises(KeyError):
            await task.run(_context(name))


# The bug this exposes drops the handler's coroutine unawaited; the resulting RuntimeWarning
# would only repeat the assertion's message as a second, teardown error.
@pytest.mark.filterwarnings("ignore:coroutine .*Handler.__call__' was never awaited:RuntimeWarning")
async def test_an_async_callable_object_is_awaited() -> None:
    """An object whose ``__call__`` is ``async def`` is an AsyncHandler by the registry's own
    types; it must be awaited, not run in a thread that drops the coroutine unawaited."""
    calls: list[uuid.UUID] = []

    class Handler:
        async def __call__(self, job: JobContext) -> None:
            calls.append(job.id)

    registry = TaskRegistry()
    registry.register("callable", Handler())
    task = registry.get("callable")
    assert task is not None
    job = _context("callable")

    await task.run(job)

    assert calls == [job.id], "the handler's coroutine was never awaited; the job did nothing"


@pytest.mark.parametrize("timeout_s", [0.0, -1.0, math.nan])
def test_a_timeout_that_is_not_a_positive_number_is_refused_at_registration(
    timeout_s: float,
) -> None:
    """NaN passed "timeout_s <= 0": registered, every job of the type then failed at run time
    with an opaque "internal error running the job: ValueError", attempt after attempt."""
    registry = TaskRegistry()
    with pytest.raises(ValueError, match="timeout_s must be positive"):

        @registry.task("t", timeout_s=timeout_s)
        async def _t(_job: JobContext) -> None:
            pass
