"""Fixtures for the worker's tests: a Runner started in-process on the test's database."""

from collections.abc import AsyncIterator

import asyncpg
import pytest

from helpers import eventually
from queue_core.db import create_pool
from queue_core.retry import Backoff
from queue_core.tasks import TaskRegistry
from queue_worker.events import WorkerEvents
from queue_worker.pauses import PauseWatcher
from queue_worker.runner import STUCK_GRACE_S, Runner, RunnerConfig
from queue_worker.settings import DEFAULT_JOB_TIMEOUT_S, DEFAULT_MAX_RESULT_BYTES
from worker.harness import (
    FAST_BACKOFF,
    LoopWatchdog,
    RecordingQueue,
    RunningWorker,
    StartWorker,
    holds,
)

STOP_TIMEOUT_S = 15.0


@pytest.fixture(name="watchdog")
async def fx_watchdog() -> AsyncIterator[LoopWatchdog]:
    watchdog = LoopWatchdog()
    watchdog.start()
    yield watchdog
    await watchdog.close()
    assert not watchdog.fired, (
        f"the event loop stopped turning for more than {watchdog.stall_s} s during the test"
    )


@pytest.fixture(name="start_worker")
async def fx_start_worker(
    db_url: str, pool: asyncpg.Pool, watchdog: LoopWatchdog
) -> AsyncIterator[StartWorker]:
    """Start a Runner as an asyncio task; every one started is stopped (drained) afterwards.
    ``queue``: a RecordingQueue of the test's own (e.g. one that injects faults)."""
    started: list[RunningWorker] = []
    own_pools: list[asyncpg.Pool] = []

    async def start(
        registry: TaskRegistry,
        *,
        concurrency: int = 4,
        poll_interval_s: float = 0.05,
        lease_s: float = 30.0,
        heartbeat_s: float = 5.0,
        shutdown_grace_s: float = 10.0,
        backoff: Backoff = FAST_BACKOFF,
        queues: tuple[str, ...] = ("default",),
        database_url: str | None = None,
        listen: bool = False,
        worker_id: str | None = None,
        job_timeout_s: float = DEFAULT_JOB_TIMEOUT_S,
        stuck_grace_s: float = STUCK_GRACE_S,
        queue: RecordingQueue | None = None,
        events: WorkerEvents | None = None,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        pauses: PauseWatcher | None = None,
    ) -> RunningWorker:
        worker_pool = pool
        if database_url is not None:
            worker_pool = await create_pool(database_url, connect_timeout_s=1.0)
            own_pools.append(worker_pool)
        queue = queue or RecordingQueue(worker_pool)
        runner = Runner(
            queue,
            registry,
            RunnerConfig(
                queues=queues,
                concurrency=concurrency,
                poll_interval_s=poll_interval_s,
                lease_s=lease_s,
                heartbeat_s=heartbeat_s,
                shutdown_grace_s=shutdown_grace_s,
                backoff=backoff,
                job_timeout_s=job_timeout_s,
                stuck_grace_s=stuck_grace_s,
                max_result_bytes=max_result_bytes,
            ),
            worker_id=worker_id,
            events=events,
            pauses=pauses,
        )
        watchdog.watch(runner)
        worker = RunningWorker(runner=runner, queue=queue)
        if listen:
            # Subscribed before the runner's first claim, so no NOTIFY after it can be missed.
            worker.start_listening(database_url or db_url, queues)
            listener = worker.listener
            assert listener is not None
            await eventually(holds(lambda: listener.connected))
        worker.start()
        started.append(worker)
        return worker

    yield start

    try:
        for worker in started:
            if not worker.task.done():
                await worker.stop(STOP_TIMEOUT_S)
            await worker.stop_listening()
        for worker in started:
            # A runner that crashed fails the test here, even if the test never looked.
            worker.task.result()
    finally:
        for worker_pool in own_pools:
            await worker_pool.close()
