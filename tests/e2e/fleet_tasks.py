"""Handlers for tests/e2e/test_e2e_fleet.py, loaded by real queue-worker processes
(``WORKER_TASKS=queue_worker.builtin_tasks,fleet_tasks`` with this directory on PYTHONPATH)."""

from queue_core.tasks import JobContext, Snooze, task

_snoozed: set[str] = set()  # job ids snoozed once by this process


@task("answer")
async def answer(job: JobContext) -> dict[str, object]:
    """Returns a result built from the payload."""
    return {"answer": 42, "echo": job.payload.get("q")}


@task("big_result")
async def big_result(job: JobContext) -> str:
    """Returns ``payload.size`` characters: a result as large as the test wants."""
    return "x" * int(job.payload["size"])


@task("snooze_once")
async def snooze_once(job: JobContext) -> str:
    """Snoozes for ``payload.seconds`` the first time this process sees the job, then returns."""
    if str(job.id) not in _snoozed:
        _snoozed.add(str(job.id))
        raise Snooze(float(job.payload["seconds"]))
    return "woke up"
