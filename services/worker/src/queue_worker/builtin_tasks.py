"""Handlers every worker has unless ``WORKER_TASKS`` says otherwise: ``noop``, ``sleep``,
``fail`` and the seed's ``send_email`` example."""

import asyncio
from email.message import EmailMessage
from functools import cache

import aiosmtplib

from queue_core.log import get_logger
from queue_core.settings import load_settings
from queue_core.tasks import JobContext, PermanentError, task
from queue_worker.settings import SmtpSettings

log = get_logger("queue_worker.tasks")


class PayloadError(PermanentError):
    """The job's payload lacks a field the handler needs, or has the wrong type."""


def _field(job: JobContext, name: str, kind: type, *, default: object = ...) -> object:
    value = job.payload.get(name, default)
    if value is ...:
        raise PayloadError(f"payload.{name} is required")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, kind):  # JSON true is not a number
        raise PayloadError(f"payload.{name} must be a {kind.__name__}")
    return value


@task("noop")
async def noop(_job: JobContext) -> None:
    """Does nothing: for smoke tests and benchmarks."""


@task("sleep")
async def sleep(job: JobContext) -> None:
    """Sleeps ``payload.seconds`` (a number): stands in for slow work."""
    seconds = _field(job, "seconds", float)
    assert isinstance(seconds, float)  # noqa: S101 - narrowed by _field
    if seconds < 0:
        raise PayloadError("payload.seconds must not be negative")
    await asyncio.sleep(seconds)


@task("fail")
async def fail(job: JobContext) -> None:
    """Always raises, with ``payload.message``: exercises retries and the failed state."""
    message = _field(job, "message", str, default="failed on purpose")
    raise RuntimeError(message)


@cache
def _smtp_settings() -> SmtpSettings:
    return load_settings(SmtpSettings)


@task("send_email")
async def send_email(job: JobContext) -> None:
    """The seed's example: ``{"recipient", "subject", "body"}``. Sends over SMTP when SMTP_HOST
    is set; otherwise logs the delivery so the example completes out of the box."""
    recipient, subject, body = (str(_field(job, k, str)) for k in ("recipient", "subject", "body"))
    smtp = _smtp_settings()
    if smtp.host is None:
        log.info("email_logged", recipient=recipient, subject=subject, reason="SMTP_HOST unset")
        return
    message = EmailMessage()
    message["From"] = smtp.sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Message-ID"] = f"<{job.id}@task-queue>"  # lets a receiver spot a redelivery
    message.set_content(body)
    await aiosmtplib.send(
        message,
        hostname=smtp.host,
        port=smtp.port,
        username=smtp.username,
        password=smtp.password,
        start_tls=smtp.starttls,
        use_tls=smtp.use_tls,
        timeout=smtp.timeout_s,
    )
    log.info("email_sent", recipient=recipient, subject=subject, smtp_host=smtp.host)
