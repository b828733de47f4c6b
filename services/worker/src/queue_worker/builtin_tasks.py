"""Handlers every worker has unless ``WORKER_TASKS`` says otherwise: ``noop``, ``sleep``,
``fail`` and the seed's ``send_email`` example.

Their log lines name the job, never what it carries: no recipient, subject, body or payload.
"""

import asyncio
import math
from email.message import EmailMessage

import aiosmtplib

from queue_core.log import get_logger
from queue_core.settings import load_settings
from queue_core.tasks import JobContext, PermanentError, task
from queue_worker.settings import SmtpSettings

log = get_logger("queue_worker.tasks")

# The longest ``sleep`` accepts: a stand-in for slow work, not a way to hold a slot for days.
MAX_SLEEP_S = 3600.0


class PayloadError(PermanentError):
    """The job's payload lacks a field the handler needs, or has the wrong type."""


def _field(job: JobContext, name: str, kind: type, *, default: object = ...) -> object:
    value = job.payload.get(name, default)
    if value is ...:
        raise PayloadError(f"payload.{name} is required")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:  # JSON's integers have no limit: beyond a float's, not finite
            value = math.inf if value > 0 else -math.inf
    if isinstance(value, bool) or not isinstance(value, kind):  # JSON true is not a number
        raise PayloadError(f"payload.{name} must be a {kind.__name__}")
    return value


@task("noop")
async def noop(_job: JobContext) -> None:
    """Does nothing: for smoke tests and benchmarks."""


@task("sleep")
async def sleep(job: JobContext) -> None:
    """Sleeps ``payload.seconds`` (a number from 0 to ``MAX_SLEEP_S``): stands in for slow
    work."""
    seconds = _field(job, "seconds", float)
    assert isinstance(seconds, float)  # noqa: S101 - narrowed by _field
    if not math.isfinite(seconds):
        raise PayloadError("payload.seconds must be a finite number")
    if seconds < 0:
        raise PayloadError("payload.seconds must not be negative")
    if seconds > MAX_SLEEP_S:
        raise PayloadError(f"payload.seconds must be at most {MAX_SLEEP_S:g}")
    await asyncio.sleep(seconds)


@task("fail")
async def fail(job: JobContext) -> None:
    """Always raises, with ``payload.message``: exercises retries and the failed state."""
    message = _field(job, "message", str, default="failed on purpose")
    raise RuntimeError(message)


_smtp: SmtpSettings | None = None


def configure_smtp(settings: SmtpSettings | None) -> None:
    """Where send_email delivers. The worker calls it at start with the SMTP_* settings it
    validated there, so a bad value stops the worker before any job runs. None: read them from
    the environment at the next email (tests)."""
    global _smtp  # noqa: PLW0603 - one process-wide setting, like the task registry
    _smtp = settings


def _smtp_settings() -> SmtpSettings:
    if _smtp is None:  # not run by queue-worker (a test, a script): read them now
        configure_smtp(load_settings(SmtpSettings))
    assert _smtp is not None  # noqa: S101 - set just above
    return _smtp


@task("send_email")
async def send_email(job: JobContext) -> None:
    """The seed's example: ``{"recipient", "subject", "body"}``. Sends over SMTP when SMTP_HOST
    is set; otherwise logs the delivery so the example completes out of the box."""
    recipient, subject, body = (str(_field(job, k, str)) for k in ("recipient", "subject", "body"))
    smtp = _smtp_settings()
    if smtp.host is None:
        log.info("email_logged", job_id=str(job.id), reason="SMTP_HOST unset")
        return
    message = EmailMessage()
    message["From"] = smtp.sender
    message["To"] = recipient
    message["Subject"] = subject
    message_id = f"<{job.id}@task-queue>"  # lets a receiver spot a redelivery
    message["Message-ID"] = message_id
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
    log.info("email_sent", job_id=str(job.id), message_id=message_id)
