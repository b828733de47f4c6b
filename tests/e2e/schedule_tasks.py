"""A schedule for tests/e2e/test_e2e_schedules.py, loaded by real queue-worker processes: a job
every second, on time within the default grace."""

from queue_core.tasks import JobContext, task


@task("every_second", every_s=1)
async def every_second(job: JobContext) -> None:
    assert job.payload == {}
