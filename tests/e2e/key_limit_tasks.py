"""Handlers for tests/e2e/test_e2e_key_limits.py, loaded by real queue-worker processes
(``WORKER_TASKS=queue_worker.builtin_tasks,key_limit_tasks`` with this directory on PYTHONPATH).
"""

import asyncio
import time

from queue_core.tasks import JobContext, PermanentError, task


@task("timed")
async def timed(job: JobContext) -> dict[str, float]:
    """Sleeps ``payload.sleep_s`` and returns when it started and ended, by this machine's
    clock (every worker of a test runs on one machine): the handler's own account of when it
    ran, which is what a concurrency limit is about."""
    started = time.time()
    await asyncio.sleep(float(job.payload.get("sleep_s", 0)))
    return {"start": started, "end": time.time()}


@task("fail_for_good")
async def fail_for_good(_: JobContext) -> None:
    """Fails at once, no retry."""
    raise PermanentError("failed on purpose")
