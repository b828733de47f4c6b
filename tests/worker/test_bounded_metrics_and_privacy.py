"""What a client sends cannot grow the worker's /metrics, and never reaches its logs: a flood
of made-up job types stays one ``other`` label; recipients, subjects, bodies and payloads appear
in no log line, in either format, at any level."""

import asyncio
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from prometheus_client.parser import text_string_to_metric_families

from helpers import Proc, eventually
from queue_core.jobs import NewJob
from queue_core.queue import Queue
from queue_core.states import JobStatus
from queue_core.tasks import JobContext, TaskRegistry
from queue_worker.http import SidePortServer
from queue_worker.metrics import OTHER_LABEL, PrometheusEvents
from worker.harness import StartWorker, wait_for_status

FLOOD_TYPES = 20_000
# Far above what a bounded /metrics needs, far below the 28.8 MB 20k types once made.
METRICS_MAX_BYTES = 100_000

MARKERS = {
    "recipient": "rcpt-marker-5b1e@example.test",
    "subject": "subject-marker-5b1e",
    "body": "body-marker-5b1e",
}
FAIL_MARKER = "fail-message-9c41"
PAYLOAD_MARKER = "payload-marker-5b1e"


async def test_a_flood_of_made_up_types_leaves_metrics_small(
    pool: asyncpg.Pool, queue: Queue, start_worker: StartWorker
) -> None:
    registry = TaskRegistry()

    @registry.task("known")
    async def known(_job: JobContext) -> None:
        pass

    events = PrometheusEvents(50, types=registry.names(), queues=("default",))
    await start_worker(registry, concurrency=50, events=events)
    side = SidePortServer("127.0.0.1", 0, lambda: None)  # type: ignore[arg-type,return-value]
    side.start()
    # The registry is the process's: in a full run it also holds what earlier tests' API apps
    # exported. What the flood adds is what is bounded.
    before = await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{side.port}/metrics", timeout=10)
    try:
        # Straight into the table: 20k distinct types, none with a handler.
        await pool.execute(
            "INSERT INTO jobs (id, type, payload, max_attempts)"
            " SELECT gen_random_uuid(), 'flood-' || g, '{}', 1"
            " FROM generate_series(1, $1) AS g",
            FLOOD_TYPES,
        )
        known_id = await queue.enqueue(NewJob(type="known", payload={}))

        async def all_failed() -> bool:
            count = await pool.fetchval("SELECT count(*) FROM jobs WHERE status = 'failed'")
            return bool(count == FLOOD_TYPES)

        await eventually(all_failed, timeout_s=120)
        await wait_for_status(queue, known_id, JobStatus.COMPLETED)
        response = await asyncio.to_thread(
            httpx.get, f"http://127.0.0.1:{side.port}/metrics", timeout=10
        )
    finally:
        side.stop()

    assert response.status_code == 200
    assert len(response.content) - len(before.content) < METRICS_MAX_BYTES
    types = {
        sample.labels["type"]
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if family.name.startswith("queue_worker_") and "type" in sample.labels
    }
    # The worker's statistics live for the process: other tests' types may be there too.
    assert "known" in types
    assert OTHER_LABEL in types
    assert not [name for name in types if name.startswith("flood-")]


class _Collector:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture(name="smtp_port")
def fx_smtp_port() -> Iterator[tuple[int, _Collector]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    collector = _Collector()
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, collector
    finally:
        controller.stop()


@pytest.mark.parametrize("log_format", ["console", "json"])
@pytest.mark.parametrize("smtp", [True, False], ids=["smtp", "no-smtp"])
async def test_no_recipient_subject_body_or_payload_in_any_log_line(  # noqa: PLR0917 - fixtures
    log_format: str,
    smtp: bool,  # noqa: FBT001 - a parameter
    db_url: str,
    queue: Queue,
    smtp_port: tuple[int, _Collector],
    tmp_path: Path,
) -> None:
    port, collector = smtp_port
    env = {
        "DATABASE_URL": db_url,
        "LOG_FORMAT": log_format,
        "LOG_LEVEL": "DEBUG",
        "WORKER_METRICS_PORT": "0",
        "WORKER_POLL_INTERVAL_S": "0.05",
        "SMTP_HOST": "127.0.0.1" if smtp else "",
        "SMTP_PORT": str(port),
    }
    email_id = await queue.enqueue(NewJob(type="send_email", payload=MARKERS))
    noop_id = await queue.enqueue(NewJob(type="noop", payload={"secret": PAYLOAD_MARKER}))
    # The built-in fail raises with its payload's message: the job keeps it, the log must not.
    fail_id = await queue.enqueue(
        NewJob(type="fail", payload={"message": FAIL_MARKER}, max_attempts=1)
    )
    worker = Proc("worker", ["queue-worker"], env, tmp_path)
    try:
        await wait_for_status(queue, email_id, JobStatus.COMPLETED, timeout_s=30)
        await wait_for_status(queue, noop_id, JobStatus.COMPLETED)
        failed = await wait_for_status(queue, fail_id, JobStatus.FAILED)
        worker.signal(signal.SIGTERM)
        code = await asyncio.to_thread(worker.wait, 30)
        output = worker.output()
    finally:
        worker.stop()

    assert code == 0, output

    assert "job_finished" in output  # the lines were written, at DEBUG level too
    assert len(collector.envelopes) == (1 if smtp else 0)
    assert failed.error_message == f"RuntimeError: {FAIL_MARKER}"
    for marker in [*MARKERS.values(), PAYLOAD_MARKER, FAIL_MARKER]:
        assert marker not in output
