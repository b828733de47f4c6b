"""The chaos test's handler, loaded by real worker processes through WORKER_TASKS.

Each execution first writes a row to ``executions`` (committed at once), then works a little.
A job killed mid-flight and run again therefore leaves two rows: that is how the test counts
duplicate executions.
"""

import asyncio
import os
import random

import asyncpg

from queue_core.db import create_pool
from queue_core.tasks import JobContext, task

_pool: asyncpg.Pool | None = None


async def _get_pool() -> asyncpg.Pool:
    global _pool  # noqa: PLW0603 - one pool per worker process, made on first use
    if _pool is None:
        _pool = await create_pool(os.environ["DATABASE_URL"], max_size=4)
    return _pool


@task("chaos_record")
async def chaos_record(job: JobContext) -> None:
    pool = await _get_pool()
    await pool.execute(
        "INSERT INTO executions (job_id, pid, attempt) VALUES ($1, $2, $3)",
        job.id,
        os.getpid(),
        job.attempt,
    )
    await asyncio.sleep(random.uniform(0.05, 0.15))  # noqa: S311 - not cryptography
