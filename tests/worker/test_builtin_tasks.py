"""The built-in handlers (noop, sleep, fail, send_email), run by a Runner from the process-wide
registry, as ``queue-worker`` runs them; send_email against a real SMTP server."""

import email
import email.policy
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from queue_core.jobs import NewJob
from queue_core.queue import Queue
from queue_core.states import JobStatus
from queue_core.tasks import registry
from queue_worker import builtin_tasks
from queue_worker.builtin_tasks import configure_smtp
from worker.harness import StartWorker, wait_for_status

SMTP_VARIABLES = ("SMTP_HOST", "SMTP_PORT", "SMTP_USERNAME", "SMTP_PASSWORD", "SMTP_SENDER")


@dataclass
class _Collector:
    """An aiosmtpd handler that keeps every message it is given."""

    envelopes: list[Envelope] = field(default_factory=list)

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(name="no_smtp")
def fx_no_smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in SMTP_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    configure_smtp(None)  # send_email reads its settings once per process
    yield
    configure_smtp(None)


@pytest.fixture(name="smtp_server")
def fx_smtp_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Collector]:
    """A real SMTP server on a loopback port, and SMTP_* pointing send_email at it."""
    collector = _Collector()
    port = _free_port()
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    for name in SMTP_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(port))
    monkeypatch.setenv("SMTP_SENDER", "queue@example.test")
    configure_smtp(None)
    try:
        yield collector
    finally:
        controller.stop()
        configure_smtp(None)


def test_the_builtin_tasks_are_registered_under_their_names() -> None:
    assert builtin_tasks.noop is not None  # imported: its @task decorators have run
    for name in ("noop", "sleep", "fail", "send_email"):
        task = registry.get(name)
        assert task is not None, name
        assert task.handler is getattr(builtin_tasks, name)


async def test_noop_completes(queue: Queue, start_worker: StartWorker) -> None:
    job_id = await queue.enqueue(NewJob(type="noop", payload={"anything": True}))
    await start_worker(registry)

    job = await wait_for_status(queue, job_id, JobStatus.COMPLETED)
    assert job.attempts == 1


async def test_sleep_completes(queue: Queue, start_worker: StartWorker) -> None:
    job_id = await queue.enqueue(NewJob(type="sleep", payload={"seconds": 0.05}))
    await start_worker(registry)

    job = await wait_for_status(queue, job_id, JobStatus.COMPLETED)
    assert job.attempts == 1
    assert job.started_at is not None
    assert job.finished_at is not None
    assert (job.finished_at - job.started_at).total_seconds() >= 0.05


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({}, "PayloadError: payload.seconds is required"),
        ({"seconds": "soon"}, "PayloadError: payload.seconds must be a float"),
        ({"seconds": True}, "PayloadError: payload.seconds must be a float"),
        ({"seconds": -1}, "PayloadError: payload.seconds must not be negative"),
        ({"seconds": 1e9}, "PayloadError: payload.seconds must be at most 3600"),
        ({"seconds": 10**400}, "PayloadError: payload.seconds must be a finite number"),
    ],
)
async def test_sleep_with_a_bad_payload_fails_at_once(
    payload: dict[str, Any], error: str, queue: Queue, start_worker: StartWorker
) -> None:
    job_id = await queue.enqueue(NewJob(type="sleep", payload=payload, max_attempts=5))
    await start_worker(registry)

    job = await wait_for_status(queue, job_id, JobStatus.FAILED)
    assert job.attempts == 1  # PayloadError is permanent: no retry can fix the payload
    assert job.error_message == error


async def test_fail_always_fails_with_its_message(queue: Queue, start_worker: StartWorker) -> None:
    job_id = await queue.enqueue(NewJob(type="fail", payload={"message": "boom"}, max_attempts=2))
    default_id = await queue.enqueue(NewJob(type="fail", payload={}, max_attempts=1))
    await start_worker(registry)

    job = await wait_for_status(queue, job_id, JobStatus.FAILED)
    assert job.attempts == 2  # retried like any failure
    assert job.error_message == "RuntimeError: boom"
    default = await wait_for_status(queue, default_id, JobStatus.FAILED)
    assert default.error_message == "RuntimeError: failed on purpose"


@pytest.mark.usefixtures("no_smtp")
async def test_send_email_without_smtp_host_logs_and_completes(
    queue: Queue, start_worker: StartWorker
) -> None:
    job_id = await queue.enqueue(
        NewJob(
            type="send_email",
            payload={"recipient": "ada@example.test", "subject": "Hi", "body": "Hello"},
        )
    )
    await start_worker(registry)

    job = await wait_for_status(queue, job_id, JobStatus.COMPLETED)
    assert job.attempts == 1


@pytest.mark.usefixtures("no_smtp")
async def test_send_email_without_a_recipient_fails_at_once(
    queue: Queue, start_worker: StartWorker
) -> None:
    job_id = await queue.enqueue(
        NewJob(type="send_email", payload={"subject": "Hi", "body": "Hello"}, max_attempts=5)
    )
    await start_worker(registry)

    job = await wait_for_status(queue, job_id, JobStatus.FAILED)
    assert job.attempts == 1
    assert job.error_message == "PayloadError: payload.recipient is required"


async def test_send_email_delivers_over_smtp(
    queue: Queue, start_worker: StartWorker, smtp_server: _Collector
) -> None:
    job_id = await queue.enqueue(
        NewJob(
            type="send_email",
            payload={
                "recipient": "ada@example.test",
                "subject": "Your report is ready",
                "body": "Find it attached.\nRegards",
            },
        )
    )
    await start_worker(registry)

    await wait_for_status(queue, job_id, JobStatus.COMPLETED)

    [envelope] = smtp_server.envelopes
    assert envelope.mail_from == "queue@example.test"
    assert envelope.rcpt_tos == ["ada@example.test"]
    assert isinstance(envelope.content, bytes)
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert message["To"] == "ada@example.test"
    assert message["From"] == "queue@example.test"
    assert message["Subject"] == "Your report is ready"
    assert message["Message-ID"] == f"<{job_id}@task-queue>"
    body = message.get_body()
    assert body is not None
    # SMTP carries CRLF line endings; the text is what the job asked for.
    assert body.get_content().replace("\r\n", "\n").strip() == "Find it attached.\nRegards"


async def test_send_email_to_an_unreachable_server_is_retried(
    queue: Queue, start_worker: StartWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in SMTP_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(_free_port()))  # nothing listens there
    configure_smtp(None)
    try:
        job_id = await queue.enqueue(
            NewJob(
                type="send_email",
                payload={"recipient": "ada@example.test", "subject": "s", "body": "b"},
                max_attempts=2,
            )
        )
        await start_worker(registry)

        job = await wait_for_status(queue, job_id, JobStatus.FAILED)
    finally:
        configure_smtp(None)

    assert job.attempts == 2  # a connection error is transient: every attempt was used
    assert job.error_message is not None
    assert job.error_message.startswith("SMTPConnectError")
