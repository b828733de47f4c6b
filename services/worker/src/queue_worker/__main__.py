"""``queue-worker``: run the claim loop until SIGTERM or SIGINT, then drain and exit 0."""

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Sequence

import asyncpg
import uvloop

from queue_core.db import create_pool
from queue_core.errors import TransientDatabaseError
from queue_core.fleet import Fleet, WorkerInfo
from queue_core.gc_tuning import tune_gc
from queue_core.log import configure, get_logger
from queue_core.queue import Queue
from queue_core.retention import Retention
from queue_core.retry import Backoff
from queue_core.schedules import Schedules
from queue_core.settings import load_settings
from queue_core.tasks import load_task_modules, registry
from queue_worker.builtin_tasks import configure_smtp
from queue_worker.http import SidePortServer
from queue_worker.listener import Listener
from queue_worker.maintenance import Rescuer
from queue_worker.metrics import PrometheusEvents, PrometheusRetentionEvents
from queue_worker.pauses import PauseWatcher
from queue_worker.presence import Presence
from queue_worker.retention import RetentionService, retention_by_status
from queue_worker.runner import Runner, RunnerConfig, new_worker_id
from queue_worker.scheduler import Scheduler
from queue_worker.settings import SmtpSettings, WorkerSettings

log = get_logger("queue_worker")

# /healthz fails once the claim loop has not turned for this many poll intervals.
STALL_POLL_INTERVALS = 10
STALL_MIN_S = 30.0
# How long a stopping worker tries to delete its row from the workers table; failing that, the
# row is pruned once it has not been seen for WORKER_GONE_AFTER_S.
LEAVE_TIMEOUT_S = 5.0
# How long tasks left behind by handlers get to end once cancelled, before the process exits
# around them.
STRAY_TASKS_WAIT_S = 2.0


async def serve(settings: WorkerSettings, hung: list[int]) -> None:
    """Run the worker until a stop is requested and it has drained. Appends to ``hung`` how
    many threads of sync handlers were still running when it ended (see :func:`main`)."""
    pool = await create_pool(
        settings.database_url, max_size=settings.pool_size, application_name="queue-worker"
    )
    events = PrometheusEvents(settings.concurrency, types=registry.names(), queues=settings.queues)
    queue = Queue(pool, events=events)
    fleet = Fleet(pool)
    worker_id = new_worker_id()
    runner: Runner | None = None
    pauses = PauseWatcher(fleet, settings.queues)
    listener = Listener(
        settings.database_url,
        settings.queues,
        lambda: runner.wake() if runner is not None else None,
        on_reconnect=lambda: events.database_reconnected("listener"),
        on_pause_change=pauses.refresh_soon,
    )
    rescuer = Rescuer(queue, settings.rescue_interval_s, events=events)
    retention_s = retention_by_status(
        settings.retention_completed_s, settings.retention_failed_s, settings.retention_cancelled_s
    )
    retention = RetentionService(
        Retention(pool, retention_s, batch=settings.retention_batch),
        settings.retention_interval_s,
        PrometheusRetentionEvents(retention_s),
    )
    presence = Presence(
        fleet,
        WorkerInfo(
            id=worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=settings.queues,
            task_types=tuple(registry.names()),
            concurrency=settings.concurrency,
        ),
    )
    runner = Runner(
        queue,
        registry,
        RunnerConfig(
            queues=settings.queues,
            concurrency=settings.concurrency,
            poll_interval_s=settings.poll_interval_s,
            lease_s=settings.lease_s,
            heartbeat_s=settings.heartbeat_s,
            shutdown_grace_s=settings.shutdown_grace_s,
            backoff=Backoff(settings.retry_base_s, settings.retry_cap_s),
            job_timeout_s=settings.job_timeout_s,
            max_result_bytes=settings.max_result_bytes,
        ),
        worker_id=worker_id,
        events=events,
        services=[listener, rescuer, presence, retention, *_scheduler(pool, settings.queues)],
        pauses=pauses,
    )
    stall_after_s = max(STALL_MIN_S, STALL_POLL_INTERVALS * settings.poll_interval_s)
    side = SidePortServer(
        settings.metrics_host, settings.metrics_port, lambda: runner.health(stall_after_s)
    )
    side.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runner.request_stop)
    log.info("worker_side_port", port=side.port)
    stopped = False
    try:
        # The listener, the rescuer, the presence, the retention and the pauses run under its
        # supervisor, all stopped when it returns: no beat can register this worker again
        # after leave().
        await runner.run()
        await _leave(presence)
        stopped = True
    finally:
        hung.append(runner.threads_still_running)
        side.stop()
        await pool.close()
        if stray := await _cancel_stray_tasks(STRAY_TASKS_WAIT_S):
            # Tasks that ignore their cancel: handlers that swallowed it at shutdown (their
            # jobs released by the drain), or tasks a handler started and left behind. Closing
            # the event loop cancels every task and waits for each, for ever for these: ending
            # the process is what stops them.
            log.warning("worker_exit_abandoning_tasks", tasks=stray)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0 if stopped else 1)


async def _cancel_stray_tasks(timeout_s: float) -> int:
    """Cancel every task but this one (the worker's own have ended by now: what is left was
    started by handlers) and wait up to ``timeout_s``. Returns how many are still running."""
    current = asyncio.current_task()
    stray = [task for task in asyncio.all_tasks() if task is not current]
    if not stray:
        return 0
    for task in stray:
        task.cancel()
    _, pending = await asyncio.wait(stray, timeout=timeout_s)
    return len(pending)


def _scheduler(pool: asyncpg.Pool, queues: Sequence[str]) -> list[Scheduler]:
    """The scheduler service, if this worker's tasks declare schedules (periodic jobs)."""
    declared = registry.schedules()
    return [Scheduler(Schedules(pool), declared, queues=queues)] if declared else []


async def _leave(presence: Presence) -> None:
    try:
        async with asyncio.timeout(LEAVE_TIMEOUT_S):
            await presence.leave()
    except (TransientDatabaseError, TimeoutError) as exc:
        log.warning("worker_unregister_failed", error=str(exc) or type(exc).__name__)


def main() -> None:
    # Every setting is read and checked here, before any job runs: a bad value exits 2 with
    # one line naming the variable, instead of failing at the first job that needs it.
    settings = load_settings(WorkerSettings)
    configure_smtp(load_settings(SmtpSettings))
    configure(level=settings.log_level, fmt=settings.log_format)
    try:
        load_task_modules(settings.tasks)
    except ImportError as exc:
        sys.stderr.write(f"invalid configuration: WORKER_TASKS: cannot import {exc.name!r}\n")
        raise SystemExit(2) from None
    tune_gc()
    hung: list[int] = []
    failed = True
    try:
        uvloop.run(serve(settings, hung))
        failed = False
    finally:
        if hung and hung[0]:
            # Sync handlers that never returned (a thread cannot be interrupted). Their jobs
            # are released or recorded already, but Python joins every pool thread at exit:
            # without this the process would outlive its stop until a SIGKILL, and a released
            # job could run here and on another worker at once. Ending the process stops them.
            log.warning("worker_exit_abandoning_threads", threads=hung[0])
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1 if failed else 0)


if __name__ == "__main__":
    main()
