"""Schedules for the missed-tick test of tests/e2e/test_e2e_schedules.py: every second, a tick
more than 3 s late is missed (a grace a loaded machine's stalls stay within), one schedule per
policy."""

from queue_core.tasks import JobContext, task

GRACE_S = 3.0


@task("catch_up_once", every_s=1, grace_s=GRACE_S, missed="once")
async def catch_up_once(job: JobContext) -> None:
    pass


@task("skip_missed", every_s=1, grace_s=GRACE_S, missed="skip")
async def skip_missed(job: JobContext) -> None:
    pass
