"""The handlers the docs show, loaded by a real worker in tests/docs/test_docs_examples.py
(``WORKER_TASKS=queue_worker.builtin_tasks,handlers`` with docs/examples on PYTHONPATH).
The pages include the parts between the ``--8<--`` markers."""

import uuid

from queue_core.tasks import JobContext, PermanentError, Snooze, task

# Stand-ins for the application's own code, so that the handlers below run as shown.
charges: dict[str, int] = {}


async def upstream_is_rate_limiting() -> bool:
    return False


async def make_thumbnail(url: str) -> str:
    return f"{url}.thumb.png"


class Payments:
    async def charge(self, *, customer: str, amount: int, idempotency_key: str) -> None:
        charges.setdefault(idempotency_key, amount)  # a real provider de-duplicates the same way
        _ = customer


payments = Payments()


# --8<-- [start:first]
@task("greet")
async def greet(job: JobContext) -> dict[str, str]:
    return {"greeting": f"Hello, {job.payload['name']}!"}  # stored as the job's result


# --8<-- [end:first]


# --8<-- [start:handlers]
@task("resize_image", timeout_s=120)
async def resize_image(job: JobContext) -> dict[str, str]:
    if "url" not in job.payload:
        raise PermanentError("payload.url is required")  # failed at once, no retries
    if await upstream_is_rate_limiting():
        raise Snooze(30)  # run again in 30 s; the attempt is not spent
    thumbnail_url = await make_thumbnail(job.payload["url"])
    return {"thumbnail": thumbnail_url}  # stored as the job's result


@task("legacy_report")
def legacy_report(job: JobContext) -> None:  # a plain def runs in a thread
    _ = job.payload


# --8<-- [end:handlers]


# --8<-- [start:idempotent]
@task("charge_card", timeout_s=30)
async def charge_card(job: JobContext) -> None:
    # The payment provider de-duplicates on the idempotency key: a second run after a crash
    # returns the first charge instead of charging twice.
    await payments.charge(
        customer=job.payload["customer"],
        amount=job.payload["amount"],
        idempotency_key=str(job.id),
    )


# --8<-- [end:idempotent]


# --8<-- [start:schedules]
@task("report", cron="0 * * * *", tz="Europe/Paris")  # each hour, Paris time
async def report(job: JobContext) -> None: ...


@task("ping", every_s=30, missed="skip", queue="ops", payload={"target": "db"})
async def ping(job: JobContext) -> None: ...


# --8<-- [end:schedules]


def job_key(job: JobContext) -> uuid.UUID:
    return job.id
