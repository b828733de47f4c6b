"""The system as compose.yaml deploys it, on a real Docker engine: both images built, PostgreSQL,
migrate, login-roles, the API, two workers, the mail sink and Prometheus; the API and the
workers logged in as their own roles; the seed's example delivered into the sink; three worker
replicas scraped; a worker drained by SIGTERM.

The tests share one stack and run in file order: the last one stops a worker for good.
"""

import json
import re
from typing import Any

import httpx
import pytest

from containers.compose import IMAGES, ComposeStack, parse_docker_time
from deploy.project import REPO_ROOT
from helpers import wait_until

# Building from an empty cache downloads every wheel: the session's first test pays for it.
pytestmark = [pytest.mark.containers, pytest.mark.timeout(900)]

# README's `POST /jobs` example, the seed's, word for word.
SEED_PAYLOAD = {
    "recipient": "test@example.com",
    "subject": "Hello from the Task Queue!",
    "body": "This is a test email.",
}
SEED_EXAMPLE = {"type": "send_email", "payload": SEED_PAYLOAD}
# The line each service logs once it serves: uvicorn's, and the worker's before its first claim.
READY_LINES = {"api": "Uvicorn running on", "worker": '"worker_started"'}
SYNTAX_DIRECTIVE = re.compile(r"^#\s*syntax\s*=", re.IGNORECASE | re.MULTILINE)
# Prometheus finds replicas by DNS every 30 s and scrapes every 15 s (deploy/prometheus).
SCRAPE_DEADLINE_S = 120.0
DRAIN_JOBS = 6
DRAIN_JOB_S = 5.0  # long enough to be running when SIGTERM comes, well within the grace (25 s)
# The login roles compose's secrets name, and the application_name each service connects with.
ROLES = {"api": ("queue-api", "queue_api"), "worker": ("queue-worker", "queue_worker")}
# Run inside a container, with its DATABASE_URL_FILE: who it logs in as, and whether that role
# may read api_keys. Prints "<role> <allowed|denied>".
WHO_AM_I = """
import asyncio, os, asyncpg
from queue_core.settings import read_secret_file
async def main():
    url = read_secret_file("DATABASE_URL_FILE", os.environ["DATABASE_URL_FILE"])
    conn = await asyncpg.connect(url)
    try:
        user = await conn.fetchval("SELECT current_user")
        try:
            await conn.fetch("SELECT 1 FROM api_keys LIMIT 1")
            print(user, "allowed")
        except asyncpg.InsufficientPrivilegeError:
            print(user, "denied")
    finally:
        await conn.close()
asyncio.run(main())
"""


def _worker_ips(stack: ComposeStack) -> dict[str, str]:
    """Running worker containers by their address on the compose network."""
    ips = {}
    for container_id in stack.container_ids("worker"):
        info = stack.inspect(container_id)
        if info["State"]["Running"]:
            (network,) = info["NetworkSettings"]["Networks"].values()
            ips[network["IPAddress"]] = container_id
    return ips


def _start_up_s(stack: ComposeStack, container_id: str, ready_line: str) -> tuple[float, float]:
    """Seconds from the container's start to its ready line, and to Docker's first passing
    HEALTHCHECK probe (which runs one interval, 10 s, after the start)."""
    state = stack.inspect(container_id)["State"]
    started = parse_docker_time(state["StartedAt"])
    ready = next(t for t, text in stack.logs(container_id) if ready_line in text)
    healthy = min(parse_docker_time(p["End"]) for p in state["Health"]["Log"] if p["ExitCode"] == 0)
    return (ready - started).total_seconds(), (healthy - started).total_seconds()


def _recipients(message: dict[str, Any]) -> list[str]:
    # Mailpit lists {"Name", "Address"} objects; the local stand-in (setup.sh) plain strings.
    return [to["Address"] if isinstance(to, dict) else to for to in message["To"]]


def test_both_images_build_and_every_service_comes_up_healthy(
    compose_stack: ComposeStack, capsys: pytest.CaptureFixture[str]
) -> None:
    for service in IMAGES:
        dockerfile = (REPO_ROOT / "services" / service / "Dockerfile").read_text()
        # A `# syntax=` directive makes BuildKit pull that frontend, which mirrors and
        # air-gapped engines cannot: the engine's built-in frontend builds these files.
        assert not SYNTAX_DIRECTIVE.search(dockerfile), f"services/{service}/Dockerfile"

    (migrate,) = compose_stack.container_ids("migrate")
    state = compose_stack.inspect(migrate)["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 0), "migrate runs once and succeeds"
    assert len(compose_stack.container_ids("worker")) == 2
    api = compose_stack.url("api", 8080)
    assert httpx.get(f"{api}/ready", timeout=5).json() == {"message": "ready"}

    sizes, start_up = {}, {}
    for service, ready_line in READY_LINES.items():
        image = json.loads(compose_stack.run("image", "inspect", compose_stack.image(service)))[0]
        assert image["Config"]["User"] == "10001:10001", "non-root"
        sizes[service] = image["Size"] / 1e6
        start_up[service] = [
            _start_up_s(compose_stack, container_id, ready_line)
            for container_id in compose_stack.container_ids(service)
        ]
    with capsys.disabled():
        print(f"\nimages built in {compose_stack.build_s:.1f} s")  # noqa: T201 - README figures
        for service, mb in sizes.items():
            figures = ", ".join(
                f"{ready:.2f} s/{healthy:.1f} s" for ready, healthy in start_up[service]
            )
            print(f"{service}: {mb:.0f} MB; start to ready/healthy: {figures}")  # noqa: T201


def test_the_api_and_the_workers_log_in_as_their_own_roles(
    compose_stack: ComposeStack,
) -> None:
    for one_shot in ("migrate", "login-roles"):
        (container,) = compose_stack.container_ids(one_shot)
        state = compose_stack.inspect(container)["State"]
        assert (state["Status"], state["ExitCode"]) == ("exited", 0), one_shot
    # The owner migrated: it owns the tables.
    owners = compose_stack.psql(
        "SELECT DISTINCT tableowner = current_user FROM pg_tables"
        " WHERE tablename IN ('jobs', 'api_keys')"
    )
    assert owners == [["t"]], owners

    # No URL and no password in any environment: only the path of the mounted secret.
    for service in ROLES:
        for container_id in compose_stack.container_ids(service):
            env = dict(
                item.split("=", 1) for item in compose_stack.inspect(container_id)["Config"]["Env"]
            )
            assert "DATABASE_URL" not in env, service
            assert env["DATABASE_URL_FILE"].startswith("/run/secrets/"), service

    # Their sessions, by the application_name each process gives its connections. The API's
    # pool opens lazily: /ready makes it connect.
    api = compose_stack.url("api", 8080)
    sessions: set[tuple[str, str]] = set()

    def both_connected() -> bool:
        nonlocal sessions
        assert httpx.get(f"{api}/ready", timeout=5).status_code == 200
        rows = compose_stack.psql(
            "SELECT DISTINCT application_name, usename FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE 'queue-%'"
        )
        sessions = {(name, role) for name, role in rows}
        return {name for name, _ in sessions} >= {"queue-api", "queue-worker"}

    wait_until(both_connected, timeout_s=30, interval_s=0.5, what="api and worker sessions")
    assert sessions == set(ROLES.values()), sessions

    # Each logs in with its own secret as its own role; only the API's may read the keys.
    assert compose_stack.exec_python("api", WHO_AM_I).split() == ["queue_api", "allowed"]
    assert compose_stack.exec_python("worker", WHO_AM_I).split() == ["queue_worker", "denied"]


@pytest.fixture(name="client_headers", scope="module")
def fx_client_headers(compose_stack: ComposeStack) -> dict[str, str]:
    """An Authorization header with a key made by queue-keys in the api container."""
    key = compose_stack.create_api_key("stack-test", "jobs:write,jobs:read")
    return {"Authorization": f"Bearer {key}"}


def test_the_seed_send_email_example_lands_in_the_mail_sink(
    compose_stack: ComposeStack, client_headers: dict[str, str]
) -> None:
    api = compose_stack.url("api", 8080)
    mail = compose_stack.url("mailpit", 8025)
    headers = client_headers

    assert httpx.post(f"{api}/jobs", json=SEED_EXAMPLE, timeout=10).status_code == 401
    response = httpx.post(f"{api}/jobs", json=SEED_EXAMPLE, headers=headers, timeout=10)
    assert response.status_code == 201, response.text
    status_url = f"{api}{response.headers['location']}"

    def completed() -> bool:
        status = httpx.get(status_url, headers=headers, timeout=5).json()
        return str(status["Status"]) == "completed"

    wait_until(completed, timeout_s=30, interval_s=0.2, what="the send_email job completed")
    # Mailpit's API path; the stand-in answers every path with the same list.
    messages = httpx.get(f"{mail}/api/v1/messages", timeout=5).json()["messages"]
    assert [(m["Subject"], _recipients(m)) for m in messages] == [
        (SEED_PAYLOAD["subject"], [SEED_PAYLOAD["recipient"]])
    ]


def test_prometheus_scrapes_every_worker_replica_after_scaling_to_three(
    compose_stack: ComposeStack,
) -> None:
    compose_stack.scale_workers(3)
    workers = _worker_ips(compose_stack)
    assert len(workers) == 3
    expected = {f"{ip}:9464" for ip in workers}
    prometheus = compose_stack.url("prometheus", 9090)
    scraped: set[str] = set()

    def every_replica_up() -> bool:
        nonlocal scraped
        # The API too: its /metrics needs the key the metrics-key one-shot made.
        query = {"query": 'up{job=~"queue-worker|queue-api"} == 1'}
        result = httpx.get(f"{prometheus}/api/v1/query", params=query, timeout=5).json()
        up = result["data"]["result"]
        scraped = {s["metric"]["instance"] for s in up if s["metric"]["job"] == "queue-worker"}
        return scraped == expected and any(s["metric"]["job"] == "queue-api" for s in up)

    try:
        wait_until(every_replica_up, timeout_s=SCRAPE_DEADLINE_S, interval_s=1.0)
    except AssertionError as exc:
        exc.add_note(f"scraped and up: {sorted(scraped)}; replicas: {sorted(expected)}")
        raise


def test_sigterm_drains_a_worker_and_it_exits_zero(
    compose_stack: ComposeStack, client_headers: dict[str, str]
) -> None:
    api = compose_stack.url("api", 8080)
    jobs = [{"type": "sleep", "payload": {"seconds": DRAIN_JOB_S}}] * DRAIN_JOBS
    response = httpx.post(
        f"{api}/v1/jobs/batch",
        json={"jobs": jobs},
        headers=client_headers,
        timeout=10,
    )
    assert response.status_code == 201, response.text
    ids = response.json()["ids"]
    id_list = ",".join(f"'{job_id}'" for job_id in ids)

    # The worker holding the most of them: its lease_owner starts with its container's hostname.
    held_by: dict[str, list[str]] = {}

    def some_running() -> bool:
        held_by.clear()
        for job_id, owner in compose_stack.psql(
            f"SELECT id, lease_owner FROM jobs WHERE id IN ({id_list}) AND status = 'running'"
        ):
            held_by.setdefault(owner.split(":")[0], []).append(job_id)
        return bool(held_by)

    wait_until(some_running, timeout_s=15, interval_s=0.1, what="sleep jobs running")
    hosts = {
        compose_stack.inspect(container_id)["Config"]["Hostname"]: container_id
        for container_id in _worker_ips(compose_stack).values()
    }
    victim_host, held = max(held_by.items(), key=lambda item: len(item[1]))
    victim = hosts[victim_host]

    compose_stack.run("kill", "--signal", "TERM", victim)
    # 0, not 137: it left by itself, long before Docker's SIGKILL (WORKER_STOP_GRACE_PERIOD).
    assert compose_stack.run("wait", victim, timeout_s=60).strip() == "0"
    events = [text for _, text in compose_stack.logs(victim)]
    assert any('"worker_draining"' in line for line in events), "it had jobs to drain"
    assert any('"worker_stopped"' in line for line in events)
    assert not any('"worker_releasing_jobs"' in line for line in events), "no job was cut short"
    held_list = ",".join(f"'{job_id}'" for job_id in held)
    rows = compose_stack.psql(f"SELECT status, attempts FROM jobs WHERE id IN ({held_list})")
    # Finished by the victim itself during the drain: not released and run again elsewhere.
    assert rows == [["completed", "1"]] * len(held), rows
