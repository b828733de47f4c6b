"""Handlers for tests/e2e/test_e2e_shutdown.py, loaded by real queue-worker processes
(``WORKER_TASKS=queue_worker.builtin_tasks,shutdown_tasks`` with this directory on PYTHONPATH)."""

import asyncio
import threading

from queue_core.tasks import JobContext, task


@task("hang_forever")
def hang_forever(_job: JobContext) -> None:
    """A sync handler that never returns: its thread cannot be interrupted."""
    threading.Event().wait()


@task("ignores_cancellation")
async def ignores_cancellation(_job: JobContext) -> None:
    """An async handler that swallows every cancellation and runs on."""
    await _stubborn()


async def _stubborn() -> None:
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            continue


_left_behind: set[asyncio.Task[None]] = set()


@task("leaves_a_stubborn_task")
async def leaves_a_stubborn_task(_job: JobContext) -> None:
    """Completes at once, leaving behind a task that swallows every cancellation."""
    _left_behind.add(asyncio.create_task(_stubborn()))
