"""The end-to-end stack: our real console scripts as child processes, started on free ports
against a real database, plus the HTTP and SQL helpers the e2e tests check them with.

Every wait polls with a deadline, and every failure message carries the processes' logs: an
e2e failure is only as useful as the output that explains it.
"""

import contextlib
import functools
import json
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from helpers import Proc, http_ok
from pg_provider import run_sync
from queue_core.db import create_pool
from queue_core.errors import TransientDatabaseError
from queue_core.keys import ALL_SCOPES, KeyStore, generate_key
from queue_core.states import FINAL_STATUSES
from queue_devtools.pgcluster import free_port

# Every process logs JSON lines so the tests can read events (job_finished, worker_stopped).
COMMON_ENV: Mapping[str, str] = {"LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}

# Short enough that retries and polling never make a test wait; WORKER_RETRY_CAP_S must not be
# below WORKER_RETRY_BASE_S.
FAST_WORKER_ENV: Mapping[str, str] = {
    "WORKER_POLL_INTERVAL_S": "0.2",
    "WORKER_RETRY_BASE_S": "0.05",
    "WORKER_RETRY_CAP_S": "0.1",
}

START_TIMEOUT_S = 20.0
JOB_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0

# The seed README's POST /jobs example, verbatim.
SEED_SEND_EMAIL: Mapping[str, Any] = {
    "type": "send_email",
    "payload": {
        "recipient": "test@example.com",
        "subject": "Hello from the Task Queue!",
        "body": "This is a test email.",
    },
}


def closed_port_url() -> str:
    """A database URL on a loopback port where nothing listens."""
    return f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"


@dataclass(frozen=True)
class Api:
    proc: Proc
    base_url: str
    probe: str = "/ready"
    key: str | None = None  # an API key with every scope, sent by client()

    @property
    def probe_url(self) -> str:
        return self.base_url + self.probe

    @property
    def auth_headers(self) -> dict[str, str]:
        return {} if self.key is None else {"Authorization": f"Bearer {self.key}"}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=10.0, headers=self.auth_headers)


@dataclass(frozen=True)
class Worker:
    proc: Proc
    metrics_port: int

    @property
    def probe_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/healthz"

    def events(self, event: str) -> list[dict[str, Any]]:
        """This worker's JSON log lines whose ``event`` is ``event``."""
        return [line for line in json_lines(self.proc.output()) if line.get("event") == event]

    def event_names(self) -> list[str]:
        """The ``event`` of each of this worker's JSON log lines, in order."""
        return [str(line.get("event")) for line in json_lines(self.proc.output())]


@dataclass(frozen=True)
class Topology:
    """The production shape: one API and two workers on one migrated database."""

    stack: "Stack"
    database_url: str
    api: Api
    workers: tuple[Worker, Worker]


def json_lines(output: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for line in output.splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


class Stack:
    """Starts processes, remembers them, and stops them all at teardown."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._procs: list[Proc] = []

    def spawn(self, name: str, args: list[str], env: Mapping[str, str]) -> Proc:
        proc = Proc(name, args, {**COMMON_ENV, **env}, self._log_dir)
        self._procs.append(proc)
        return proc

    def migrate(self, database_url: str) -> None:
        proc = self.spawn("migrate", ["queue-migrate"], {"DATABASE_URL": database_url})
        try:
            code = proc.wait(timeout_s=60)
        except subprocess.TimeoutExpired:
            code = None
        assert code == 0, f"queue-migrate exited {code}\n{self.logs()}"

    def spawn_api(
        self, database_url: str, *, probe: str = "/ready", env: Mapping[str, str] | None = None
    ) -> Api:
        """Start queue-api on a free port; ``probe`` is what :meth:`wait_ready` waits for. The
        Api carries a key with every scope (:func:`admin_key`) for its client and scrapes."""
        key = admin_key(database_url)
        port = free_port()
        proc = self.spawn(
            "api",
            ["queue-api"],
            {
                "DATABASE_URL": database_url,
                "API_HOST": "127.0.0.1",
                "API_PORT": str(port),
                **(env or {}),
            },
        )
        return Api(proc, f"http://127.0.0.1:{port}", probe, key)

    def spawn_worker(
        self, database_url: str, name: str, env: Mapping[str, str] | None = None
    ) -> Worker:
        """Start queue-worker with its side port (/healthz, /metrics) on a free port."""
        port = free_port()
        proc = self.spawn(
            name,
            ["queue-worker"],
            {
                **FAST_WORKER_ENV,
                "DATABASE_URL": database_url,
                "WORKER_METRICS_HOST": "127.0.0.1",
                "WORKER_METRICS_PORT": str(port),
                **(env or {}),
            },
        )
        return Worker(proc, port)

    def wait_ready(self, *services: "Api | Worker") -> None:
        """Wait until every service's probe answers 200; they start in parallel."""
        for service in services:
            self.wait(
                functools.partial(http_ok, service.probe_url),
                what=f"{service.proc.name} {service.probe_url} 200",
                alive=[s.proc for s in services],
                timeout_s=START_TIMEOUT_S,
            )

    def start_api(self, database_url: str, *, probe: str = "/ready") -> Api:
        api = self.spawn_api(database_url, probe=probe)
        self.wait_ready(api)
        return api

    def start_worker(
        self, database_url: str, name: str, env: Mapping[str, str] | None = None
    ) -> Worker:
        worker = self.spawn_worker(database_url, name, env)
        self.wait_ready(worker)
        return worker

    @contextlib.contextmanager
    def pausing(self, worker: Worker, queue: str) -> Iterator[None]:
        """Around a pause of ``queue``: done once ``worker`` has seen it (its log line
        queues_paused_changed). A pause reaches the workers within a second, not at once: a job
        enqueued before a worker has seen it may rightly start."""
        before = len(worker.events("queues_paused_changed"))
        yield

        def seen() -> bool:
            changes = worker.events("queues_paused_changed")[before:]
            return any(queue in change["paused"] for change in changes)

        self.wait(
            seen, what=f"{worker.proc.name} sees {queue} paused", alive=[worker.proc], timeout_s=10
        )

    def logs(self) -> str:
        """Every process's output, each under a header, for assertion messages."""
        return "\n".join(
            f"----- {proc.name} (pid {proc.pid}, exit {proc.popen.poll()}) -----\n{_output(proc)}"
            for proc in self._procs
        )

    def wait(
        self,
        check: Callable[[], bool],
        *,
        what: str,
        alive: Iterable[Proc] = (),
        timeout_s: float = JOB_TIMEOUT_S,
        interval_s: float = 0.05,
        detail: Callable[[], str] | None = None,
    ) -> None:
        """Poll ``check`` until true. Fail at the deadline, or as soon as a process in ``alive``
        exits, with ``detail()`` (the last thing seen) and every process's log in the message."""
        must_live = list(alive)
        deadline = time.monotonic() + timeout_s
        while not check():
            dead = [p.name for p in must_live if p.popen.poll() is not None]
            if dead or time.monotonic() > deadline:
                problem = (
                    f"{', '.join(dead)} exited waiting for {what}"
                    if dead
                    else f"{what}: not met within {timeout_s} s"
                )
                seen = f"\nlast seen: {detail()}" if detail is not None else ""
                raise AssertionError(f"{problem}{seen}\n{self.logs()}")
            time.sleep(interval_s)

    def stop_all(self) -> None:
        """SIGTERM every live process at once, give them STOP_TIMEOUT_S together to exit, and
        kill the ones still there."""
        for proc in self._procs:
            if proc.popen.poll() is None:
                proc.signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in reversed(self._procs):
            proc.stop(timeout_s=max(deadline - time.monotonic(), 0.1))


def _output(proc: Proc) -> str:
    try:
        return proc.output()
    except ValueError:  # its log file is closed once stopped; what it wrote is still on disk
        return proc.log_path.read_text(errors="replace")


# -- API keys ------------------------------------------------------------------------------


async def _create_key(database_url: str) -> str:
    pool = await create_pool(database_url, max_size=1)
    try:
        name = f"e2e-admin-{uuid.uuid4().hex[:8]}"
        return (await KeyStore(pool).create(name=name, scopes=ALL_SCOPES)).secret
    finally:
        await pool.close()


def admin_key(database_url: str) -> str:
    """A new key with every scope in the migrated database at ``database_url``. Where that
    database cannot be reached (a test of the API without its database), a well-formed key
    that was never stored: the API can check no key then, and answers 503, never 401."""
    try:
        return run_sync(_create_key(database_url))
    except TransientDatabaseError:
        return generate_key()[1]


# -- HTTP ----------------------------------------------------------------------------------


def enqueue(client: httpx.Client, body: Mapping[str, Any]) -> uuid.UUID:
    """POST /jobs and return the new job's id, parsed from the seed's ``"Message of id: …"``."""
    response = client.post("/jobs", json=body)
    assert response.status_code == 201, f"POST /jobs {body}: {response.status_code} {response.text}"
    created = response.json()
    assert created["message"] == "Message successfully received", created
    return uuid.UUID(created["id"].removeprefix("Message of id: "))


def job_status(client: httpx.Client, job_id: uuid.UUID) -> dict[str, Any]:
    response = client.get("/jobs/status", params={"id": str(job_id)})
    assert response.status_code == 200, f"GET status {job_id}: {response.status_code}"
    body: dict[str, Any] = response.json()
    return body


def wait_for_status(
    stack: Stack,
    client: httpx.Client,
    job_id: uuid.UUID,
    *,
    statuses: Iterable[str] = FINAL_STATUSES,
    timeout_s: float = JOB_TIMEOUT_S,
) -> dict[str, Any]:
    """Poll GET /jobs/status until the job is in one of ``statuses`` (by default, any final
    one) and return that response body."""
    wanted = set(statuses)
    last: dict[str, Any] = {}

    def reached() -> bool:
        nonlocal last
        last = job_status(client, job_id)
        return last["Status"] in wanted

    stack.wait(
        reached,
        what=f"job {job_id} in {sorted(wanted)}",
        timeout_s=timeout_s,
        detail=lambda: str(last),
    )
    return last


# -- SQL -----------------------------------------------------------------------------------


async def _fetch(database_url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def fetch(database_url: str, sql: str) -> list[asyncpg.Record]:
    """Run one statement on its own connection, from synchronous test code."""
    return run_sync(_fetch(database_url, sql))


def job_counts(database_url: str) -> dict[str, int]:
    """How many jobs are in each status, straight from the table."""
    rows = fetch(database_url, "SELECT status, count(*) AS n FROM jobs GROUP BY status")
    return {row["status"]: int(row["n"]) for row in rows}
