"""compose.yaml's own services, run as processes: the migrate, login-roles, api and worker
services' commands (their entrypoints, the images' ENTRYPOINTs) with exactly the environment
compose gives them, defaults resolved. Only what a single machine without Docker cannot provide
is substituted: the database (this test's own), free ports instead of the fixed in-network ones
(two workers cannot both listen on 9464 here), and an aiosmtpd server standing in for mailpit.
Each secret file a service reads is compose's own, pointed at this test's database: the owner
becomes this test's superuser, and queue_api and queue_worker names of this test's own (roles
belong to the whole server), with compose's passwords.

Then jobs go through them over HTTP, the seed's send_email example landing in that SMTP
server's inbox as it would in Mailpit's, and the api and the workers are seen connected as the
roles login-roles made.
"""

import email
import email.policy
import os
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from deploy.compose_model import ServiceRun, load_compose, secret_value, service_run
from deploy.project import SETTING_PREFIXES, secret_file_env_names
from e2e.stack import SEED_SEND_EMAIL, Api, Stack, Worker, admin_key, enqueue, wait_for_status
from pg_provider import run_sync
from queue_devtools.pgcluster import free_port

pytestmark = pytest.mark.e2e

# Variables the test may change, and why; anything else runs exactly as compose sets it.
SUBSTITUTED = {
    "DATABASE_URL_FILE": "compose's secret, pointed at this test's database",
    "API_DATABASE_URL_FILE": "as DATABASE_URL_FILE",
    "WORKER_DATABASE_URL_FILE": "as DATABASE_URL_FILE",
    "API_UI_SECRET_FILE": "compose's secret, as it is, from a file here",
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


@dataclass(frozen=True)
class Here:
    """What this machine puts in place of compose's database and mail sink."""

    database_url: str
    roles: Mapping[str, str]  # compose's login role → this test's name for it
    secrets_dir: Path
    mailpit: Mailpit

    def url(self, compose_url: str) -> str:
        """Compose's URL on this test's database: the owner's becomes this test's superuser;
        a service's keeps its password, under this test's name for its role."""
        compose_db, test_db = urlsplit(compose_url), urlsplit(self.database_url)
        assert (compose_db.hostname, compose_db.port) == ("postgres", 5432)
        netloc, user = test_db.netloc, compose_db.username
        if user is not None and user in self.roles:
            _, _, password = compose_db.netloc.rpartition("@")[0].partition(":")
            host = test_db.netloc.rpartition("@")[2]
            netloc = f"{self.roles[user]}:{password}@{host}"
        return urlunsplit(
            compose_db._replace(netloc=netloc, path=test_db.path, query=test_db.query)
        )


def _on_this_machine(
    compose: Any, run: ServiceRun, here: Here, changes: dict[str, str]
) -> dict[str, str]:
    env = {name: value for name, value in run.env.items() if name != "PATH"}  # the image's venv
    for variable in sorted(set(env) & secret_file_env_names()):
        secret = run.secret_path(variable)
        path = here.secrets_dir / f"{run.name}-{secret}"
        value = secret_value(compose, secret)
        # Database URLs point at this test's database; other secrets (the console's key) as is.
        path.write_text((here.url(value) if "://" in value else value) + "\n")
        changes[variable] = str(path)
    mailpit = here.mailpit
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


@pytest.fixture(name="here")
def fx_here(compose: Any, empty_db_url: str, mailpit: Mailpit, tmp_path: Path) -> Iterator[Here]:
    """This test's stand-ins, and its names for the login roles, dropped at the end."""
    suffix = uuid.uuid4().hex[:10]
    roles = {}
    for service in ("api", "worker"):
        user = urlsplit(secret_value(compose, f"{service}-database-url")).username
        assert user, f"{service}-database-url names no role"
        roles[user] = f"tq_{service}_{suffix}"
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    yield Here(empty_db_url, roles, secrets_dir, mailpit)
    run_sync(_execute(empty_db_url, *(f"DROP ROLE IF EXISTS {r}" for r in roles.values())))


async def _execute(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _connected_as(url: str) -> set[tuple[str, str]]:
    """(application_name, role) of the sessions on the database of ``url``."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT DISTINCT application_name, usename FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return {(str(row["application_name"]), str(row["usename"])) for row in rows}


@pytest.mark.usefixtures("clean_environment")
def test_the_compose_services_run_jobs_to_completion(
    compose: Any, here: Here, tmp_path: Path
) -> None:
    stack = Stack(tmp_path)
    try:
        _run_the_topology(stack, compose, here)
    finally:
        stack.stop_all()


def _run_one_shot(stack: Stack, compose: Any, here: Here, name: str) -> None:
    run = service_run(compose, name)
    proc = stack.spawn(name, run.argv, _on_this_machine(compose, run, here, {}))
    try:
        code = proc.wait(timeout_s=60)
    except subprocess.TimeoutExpired:
        code = None
    assert code == 0, f"{run.argv} exited {code}\n{stack.logs()}"


def _run_the_topology(stack: Stack, compose: Any, here: Here) -> None:
    runs = {name: service_run(compose, name) for name in ("api", "worker")}
    assert int(compose["services"]["worker"]["deploy"]["replicas"]) == WORKER_REPLICAS
    database_url, mailpit = here.database_url, here.mailpit

    # migrate, then login-roles; api and worker wait for both to exit 0
    # (service_completed_successfully).
    _run_one_shot(stack, compose, here, "migrate")
    _run_one_shot(stack, compose, here, "login-roles")

    api_env = _on_this_machine(compose, runs["api"], here, {})
    api = Api(
        stack.spawn("api", runs["api"].argv, api_env),
        f"http://127.0.0.1:{api_env['API_PORT']}",
        key=admin_key(database_url),
    )
    workers = []
    for replica in range(1, WORKER_REPLICAS + 1):
        env = _on_this_machine(compose, runs["worker"], here, {})
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

    # Each connected as its own role: the api's pool and the workers' pools and listeners.
    sessions = run_sync(_connected_as(database_url))
    api_role, worker_role = here.roles["queue_api"], here.roles["queue_worker"]
    assert {("queue-api", api_role), ("queue-worker", worker_role)} <= sessions, sessions
    assert {role for name, role in sessions if name.startswith("queue-")} == {
        api_role,
        worker_role,
    }, sessions

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
