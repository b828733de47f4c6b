"""compose.yaml's own services, run as processes: the migrate, api and worker services' commands
(their entrypoints, the images' ENTRYPOINTs) with exactly the environment compose gives them,
defaults resolved. Only what a single machine without Docker cannot provide is substituted:
the database (this test's own), free ports instead of the fixed in-network ones (two workers
cannot both listen on 9464 here), and an aiosmtpd server standing in for mailpit.

Then jobs go through them over HTTP, the seed's send_email example landing in that SMTP
server's inbox as it would in Mailpit's.
"""

import email
import email.policy
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from deploy.compose_model import ServiceRun, load_compose, service_run
from deploy.project import SETTING_PREFIXES
from e2e.stack import SEED_SEND_EMAIL, Api, Stack, Worker, admin_key, enqueue, wait_for_status
from queue_devtools.pgcluster import free_port

pytestmark = pytest.mark.e2e

# Variables the test may change, and why; anything else runs exactly as compose sets it.
SUBSTITUTED = {
    "DATABASE_URL": "this test's database instead of postgres:5432",
    "API_PORT": "a free port",
    "WORKER_METRICS_PORT": "a free port per replica",
    "SMTP_HOST": "mailpit is a name only Docker's DNS resolves",
    "SMTP_PORT": "only if compose's port is taken on this machine",
}
WORKER_REPLICAS = 2


@dataclass
class Inbox:
    """An aiosmtpd handler that keeps every message, as Mailpit's inbox would."""

    messages: list[Envelope] = field(default_factory=list)

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(envelope)
        return "250 Message accepted for delivery"


@dataclass(frozen=True)
class Mailpit:
    inbox: Inbox
    port: int


@pytest.fixture(name="compose", scope="module")
def fx_compose() -> Any:
    return load_compose()  # no variable set: every ${VAR:-default} takes its default


@pytest.fixture(name="mailpit")
def fx_mailpit(compose: Any) -> Iterator[Mailpit]:
    """An SMTP server on 127.0.0.1, on the port compose gives the workers when it is free."""
    inbox = Inbox()
    wanted = int(service_run(compose, "worker").env["SMTP_PORT"])
    controller = None
    for port in (wanted, free_port()):
        if not _bindable(port):
            continue  # taken on this machine: Controller would wait for its ready_timeout
        candidate = Controller(inbox, hostname="127.0.0.1", port=port)
        try:
            candidate.start()
        except (OSError, RuntimeError):
            continue
        controller = candidate
        break
    assert controller is not None, "no port for the SMTP server"
    try:
        yield Mailpit(inbox, controller.port)
    finally:
        controller.stop()


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server does
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(name="clean_environment")
def fx_clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The children inherit this process's environment: drop its settings, so that only
    compose's reach them."""
    for name in list(os.environ):
        if name.startswith(SETTING_PREFIXES):
            monkeypatch.delenv(name)


def _on_this_machine(
    run: ServiceRun, database_url: str, mailpit: Mailpit, changes: dict[str, str]
) -> dict[str, str]:
    env = {name: value for name, value in run.env.items() if name != "PATH"}  # the image's venv
    compose_db = urlsplit(env["DATABASE_URL"])
    assert (compose_db.hostname, compose_db.port) == ("postgres", 5432)
    test_db = urlsplit(database_url)
    changes["DATABASE_URL"] = urlunsplit(
        compose_db._replace(netloc=test_db.netloc, path=test_db.path, query=test_db.query)
    )
    if "API_PORT" in env:
        changes["API_PORT"] = str(free_port())
    if "WORKER_METRICS_PORT" in env:
        changes["WORKER_METRICS_PORT"] = str(free_port())
    if env.get("SMTP_HOST") == "mailpit":
        changes["SMTP_HOST"] = "127.0.0.1"
        if env["SMTP_PORT"] != str(mailpit.port):
            changes["SMTP_PORT"] = str(mailpit.port)
    assert set(changes) <= set(SUBSTITUTED), set(changes) - set(SUBSTITUTED)
    return {**env, **changes}


@pytest.mark.usefixtures("clean_environment")
def test_the_compose_services_run_jobs_to_completion(
    compose: Any, empty_db_url: str, mailpit: Mailpit, tmp_path: Any
) -> None:
    stack = Stack(tmp_path)
    try:
        _run_the_topology(stack, compose, empty_db_url, mailpit)
    finally:
        stack.stop_all()


def _run_the_topology(stack: Stack, compose: Any, database_url: str, mailpit: Mailpit) -> None:
    runs = {name: service_run(compose, name) for name in ("migrate", "api", "worker")}
    assert int(compose["services"]["worker"]["deploy"]["replicas"]) == WORKER_REPLICAS

    # migrate first; api and worker wait for it to exit 0 (service_completed_successfully).
    migrate = stack.spawn(
        "migrate",
        runs["migrate"].argv,
        _on_this_machine(runs["migrate"], database_url, mailpit, {}),
    )
    try:
        code = migrate.wait(timeout_s=60)
    except subprocess.TimeoutExpired:
        code = None
    assert code == 0, f"{runs['migrate'].argv} exited {code}\n{stack.logs()}"

    api_env = _on_this_machine(runs["api"], database_url, mailpit, {})
    api = Api(
        stack.spawn("api", runs["api"].argv, api_env),
        f"http://127.0.0.1:{api_env['API_PORT']}",
        key=admin_key(database_url),
    )
    workers = []
    for replica in range(1, WORKER_REPLICAS + 1):
        env = _on_this_machine(runs["worker"], database_url, mailpit, {})
        proc = stack.spawn(f"worker-{replica}", runs["worker"].argv, env)
        workers.append(Worker(proc, int(env["WORKER_METRICS_PORT"])))
    stack.wait_ready(api, *workers)

    with api.client() as client:
        ids = {
            "send_email": enqueue(client, SEED_SEND_EMAIL),
            "noop": enqueue(client, {"type": "noop", "payload": {"n": 1}}),
            "sleep": enqueue(client, {"type": "sleep", "payload": {"seconds": 0.2}}),
            "fail": enqueue(
                client, {"type": "fail", "payload": {"message": "boom"}, "max_attempts": 2}
            ),
        }
        final = {name: wait_for_status(stack, client, job_id) for name, job_id in ids.items()}
        assert "queue_jobs_due" in client.get("/metrics").text

    logs = stack.logs()
    for name in ("send_email", "noop", "sleep"):
        assert final[name]["Status"] == "completed", f"{name}: {final[name]}\n{logs}"
    assert final["fail"]["Status"] == "failed", f"{final['fail']}\n{logs}"
    assert final["fail"]["Attempts"] == 2, "retried once with compose's backoff settings"

    # The seed's example is in the inbox, from the sender compose configures.
    assert len(mailpit.inbox.messages) == 1, logs
    envelope = mailpit.inbox.messages[0]
    payload = SEED_SEND_EMAIL["payload"]
    assert envelope.rcpt_tos == [payload["recipient"]]
    assert envelope.mail_from == runs["worker"].env["SMTP_SENDER"]
    assert isinstance(envelope.content, bytes)
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert message["Subject"] == payload["subject"]
    assert message["Message-ID"] == f"<{ids['send_email']}@task-queue>"

    # What Prometheus scrapes on every replica (worker:9464 in compose).
    for worker in workers:
        metrics = httpx.get(f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=5)
        assert metrics.status_code == 200
        assert "queue_worker_jobs_finished_total" in metrics.text

    # `docker compose stop` sends SIGTERM: the workers drain and exit 0; uvicorn shuts down
    # gracefully, then re-raises the signal (exit 143 in a container).
    stack.stop_all()
    for worker in workers:
        assert worker.proc.popen.returncode == 0, f"{worker.proc.name}\n{stack.logs()}"
    assert api.proc.popen.returncode in {0, -signal.SIGTERM}, stack.logs()
