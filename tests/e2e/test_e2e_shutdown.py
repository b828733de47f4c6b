"""SIGTERM on a worker, as Kubernetes sends it: stop claiming, finish the running job, exit 0."""

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from e2e.stack import Stack, Worker, enqueue, job_status, wait_for_status

pytestmark = pytest.mark.e2e

SLEEP_S = 2.0
EXIT_TIMEOUT_S = 15.0
HERE = Path(__file__).parent


def _exit_status(worker: Worker) -> int | None:
    """The worker's exit status, None if it is still running after EXIT_TIMEOUT_S."""
    try:
        return worker.proc.wait(timeout_s=EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None


def test_sigterm_lets_the_running_job_finish_and_claims_nothing_new(
    stack: Stack, db_url: str
) -> None:
    api = stack.spawn_api(db_url)
    worker = stack.spawn_worker(db_url, "worker", {"WORKER_SHUTDOWN_GRACE_S": "20"})
    stack.wait_ready(api, worker)

    with api.client() as client:
        slow = enqueue(client, {"type": "sleep", "payload": {"seconds": SLEEP_S}})
        wait_for_status(stack, client, slow, statuses={"running"}, timeout_s=10)

        worker.proc.signal(signal.SIGTERM)
        # The signal is handled by the worker's loop, at its next turn: a job enqueued before
        # that is fair game for it.
        stack.wait(lambda: bool(worker.events("worker_stopping")), what="worker_stopping")
        late = enqueue(client, {"type": "noop", "payload": {"after": "sigterm"}})

        assert (code := _exit_status(worker)) == 0, f"worker exit status {code}\n{stack.logs()}"

        slow_final = job_status(client, slow)
        late_final = job_status(client, late)

    logs = stack.logs()
    assert slow_final["Status"] == "completed", f"{slow_final}\n{logs}"
    assert slow_final["Attempts"] == 1, f"{slow_final}\n{logs}"
    assert late_final["Status"] == "pending", f"{late_final}\n{logs}"
    assert late_final["Attempts"] == 0, f"{late_final}\n{logs}"
    lifecycle = [
        name
        for name in worker.event_names()
        if name in {"worker_draining", "worker_releasing_jobs", "worker_stopped"}
    ]
    assert lifecycle == ["worker_draining", "worker_stopped"], f"{lifecycle}\n{logs}"


def _sigterm_during(
    stack: Stack, db_url: str, job_type: str, *, until: str, env: dict[str, str]
) -> tuple[Worker, dict[str, Any], str]:
    """Run a job of ``job_type`` (tests/e2e/shutdown_tasks.py) on a worker until it is
    ``until``, then SIGTERM the worker: it must exit 0 in time. The job as the API then shows
    it, and the logs."""
    api = stack.spawn_api(db_url)
    tasks = {
        "WORKER_TASKS": "queue_worker.builtin_tasks,shutdown_tasks",
        "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    worker = stack.spawn_worker(db_url, "worker", tasks | env)
    stack.wait_ready(api, worker)

    with api.client() as client:
        job = enqueue(client, {"type": job_type, "payload": {"n": 1}})
        wait_for_status(stack, client, job, statuses={until}, timeout_s=10)

        worker.proc.signal(signal.SIGTERM)
        assert (code := _exit_status(worker)) == 0, f"worker exit status {code}\n{stack.logs()}"
        final = job_status(client, job)
    return worker, final, stack.logs()


def test_sigterm_ends_a_worker_whose_sync_handler_never_returns(stack: Stack, db_url: str) -> None:
    """Python joins a thread pool's threads at exit: a hung sync handler kept the stopped
    worker's process alive (until Kubernetes' SIGKILL), its released job free to start again
    elsewhere while it still ran here."""
    worker, final, logs = _sigterm_during(
        stack, db_url, "hang_forever", until="running", env={"WORKER_SHUTDOWN_GRACE_S": "1"}
    )

    # Released by the drain, to run on a worker that is still there.
    assert final["Status"] == "pending", f"{final}\n{logs}"
    assert final["Attempts"] == 0, f"{final}\n{logs}"  # a release gives its attempt back
    assert [e["threads"] for e in worker.events("worker_exit_abandoning_threads")] == [1], logs


def test_sigterm_ends_a_worker_whose_async_handler_ignores_cancellation(
    stack: Stack, db_url: str
) -> None:
    """An async handler that swallows CancelledError outlives the drain's cancel. The worker
    logged it as released, left its job running under a lease no one renewed, and never
    exited: closing the event loop cancels every task and waits for them all."""
    worker, final, logs = _sigterm_during(
        stack,
        db_url,
        "ignores_cancellation",
        until="running",
        env={"WORKER_SHUTDOWN_GRACE_S": "1", "WORKER_LEASE_S": "300"},
    )

    # Released for a worker that is still there, not left to a lease nobody renews.
    assert final["Status"] == "pending", f"{final}\n{logs}"
    assert final["Attempts"] == 0, f"{final}\n{logs}"
    assert [e["tasks"] for e in worker.events("worker_exit_abandoning_tasks")] == [1], logs
    job_id = final["ID"]
    assert [e["job_id"] for e in worker.events("job_ignored_cancellation")] == [job_id], logs


def test_sigterm_ends_a_worker_whose_handler_left_a_task_that_ignores_cancellation(
    stack: Stack, db_url: str
) -> None:
    """A task a handler started and left behind, swallowing its cancel, kept the stopped
    worker's process alive: closing the event loop waits for every task."""
    worker, _, logs = _sigterm_during(
        stack, db_url, "leaves_a_stubborn_task", until="completed", env={}
    )

    assert [e["tasks"] for e in worker.events("worker_exit_abandoning_tasks")] == [1], logs
