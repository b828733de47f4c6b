"""Handlers for tests/client, loaded by real queue-worker processes
(``WORKER_TASKS=queue_worker.builtin_tasks,client_tasks`` with this directory on PYTHONPATH)."""

from queue_core.tasks import JobContext, task


@task("answer")
async def answer(job: JobContext) -> dict[str, object]:
    """Returns a result built from the payload, so a test can read it back through wait()."""
    return {"answer": 42, "echo": job.payload.get("q")}


@task("hourly_report", every_s=3600)
async def hourly_report(_job: JobContext) -> None:
    """A schedule for the schedules endpoints; its first tick is an hour away."""
