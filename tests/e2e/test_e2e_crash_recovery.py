"""Failures of real processes: a worker killed mid-job, a job cancelled while it runs, a drain
that runs out of grace, a job over its own timeout, and a database outage under the API and a
worker. Every wait polls with a deadline; the deadlines follow from the workers' settings."""

import signal
import subprocess
import time
import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg
import httpx
import pytest

from e2e.stack import Stack, Worker, enqueue, job_status, json_lines, wait_for_status
from helpers import TcpProxy, http_ok
from pg_provider import run_sync
from reliability_figures import Scenario, record

pytestmark = pytest.mark.e2e

LEASE_S = 3.0
HEARTBEAT_S = 0.5
RESCUE_INTERVAL_S = 0.5
# The acceptance settings: a lost worker's job is back within about a lease.
FAST_LEASE_ENV: Mapping[str, str] = {
    "WORKER_LEASE_S": str(LEASE_S),
    "WORKER_HEARTBEAT_S": str(HEARTBEAT_S),
    "WORKER_RESCUE_INTERVAL_S": str(RESCUE_INTERVAL_S),
}
JITTER = 1.25  # every worker interval is jittered by up to ±25 %
SLACK_S = 3.0  # process scheduling, polling, one HTTP round trip
RUNNING_TIMEOUT_S = 10.0
EXIT_TIMEOUT_S = 10.0


# -- helpers -------------------------------------------------------------------------------


async def _job_row(database_url: str, job_id: uuid.UUID) -> asyncpg.Record:
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        row = await conn.fetchrow(
            "SELECT status, attempts, lease_owner, scheduled_at, timeout_s FROM jobs WHERE id = $1",
            job_id,
        )
    finally:
        await conn.close()
    assert row is not None, f"no job {job_id}"
    return row


def job_row(database_url: str, job_id: uuid.UUID) -> asyncpg.Record:
    """The job's row straight from the table (the lease columns are not in the API's body)."""
    return run_sync(_job_row(database_url, job_id))


def owner_pid(lease_owner: str) -> int:
    """The process id in a worker id, ``host:pid:random``."""
    _host, pid, _random = lease_owner.split(":")
    return int(pid)


def worker_id(worker: Worker) -> str:
    (started,) = worker.events("worker_started")
    value = started["worker_id"]
    assert isinstance(value, str), started
    return value


def finished_lines(worker: Worker, job_id: uuid.UUID) -> list[tuple[Any, Any, Any]]:
    """(attempt, outcome, status) of each of ``worker``'s job_finished lines for ``job_id``."""
    return [
        (line["attempt"], line["outcome"], line["status"])
        for line in worker.events("job_finished")
        if line.get("job_id") == str(job_id)
    ]


def exit_code(worker: Worker, timeout_s: float) -> int | None:
    try:
        return worker.proc.wait(timeout_s=timeout_s)
    except subprocess.TimeoutExpired:
        return None


# The worker's warnings about the database that are not about recording an outcome: its
# supervised services (claim, heartbeat, listener, rescuer) retrying after a transient error.
OTHER_DB_WARNINGS = frozenset({"service_retrying", "heartbeat_failed"})


def outcome_retried(worker: Worker) -> bool:
    """Whether ``worker`` has logged retrying an outcome it could not record for want of the
    database (matched by meaning, not by the event's name)."""
    return any(
        line.get("level") == "warning"
        and line.get("event") not in OTHER_DB_WARNINGS
        and "database unavailable" in str(line.get("error"))
        for line in json_lines(worker.proc.output())
    )


def service_retried(worker: Worker, service: str) -> bool:
    """Whether ``worker``'s supervised ``service`` has met a transient error and is retrying."""
    return any(line.get("service") == service for line in worker.events("service_retrying"))


def ready_status(client: httpx.Client) -> int | None:
    try:
        return client.get("/ready", timeout=2.0).status_code
    except httpx.HTTPError:
        return None


# -- a worker killed mid-job ---------------------------------------------------------------

CRASH_SLEEP_S = 2.0


def test_a_job_whose_worker_is_killed_is_rescued_and_completed_by_the_other_worker(
    stack: Stack, db_url: str
) -> None:
    api = stack.spawn_api(db_url)
    workers = (
        stack.spawn_worker(db_url, "worker-a", FAST_LEASE_ENV),
        stack.spawn_worker(db_url, "worker-b", FAST_LEASE_ENV),
    )
    stack.wait_ready(api, *workers)

    with api.client() as client:
        job_id = enqueue(client, {"type": "sleep", "payload": {"seconds": CRASH_SLEEP_S}})
        wait_for_status(stack, client, job_id, statuses={"running"}, timeout_s=RUNNING_TIMEOUT_S)
        first_owner = job_row(db_url, job_id)["lease_owner"]
        assert first_owner is not None
        (victim,) = [w for w in workers if w.proc.pid == owner_pid(first_owner)]
        (survivor,) = [w for w in workers if w is not victim]

        killed_at = time.monotonic()
        victim.proc.signal(signal.SIGKILL)
        assert exit_code(victim, EXIT_TIMEOUT_S) == -signal.SIGKILL

        # Lease runs out, a rescuer (polling) puts the job back, the survivor runs it again.
        owners: list[str] = []

        def finished() -> bool:
            row = job_row(db_url, job_id)
            if row["lease_owner"] is not None and row["lease_owner"] not in owners:
                owners.append(row["lease_owner"])
            return row["status"] in {"completed", "failed", "cancelled"}

        stack.wait(
            finished,
            what=f"job {job_id} finished after its worker was killed",
            alive=[api.proc, survivor.proc],
            timeout_s=JITTER * (LEASE_S + RESCUE_INTERVAL_S) + CRASH_SLEEP_S + SLACK_S,
            detail=lambda: f"lease owners seen: {owners}",
        )
        recovered_s = time.monotonic() - killed_at
        final = job_status(client, job_id)

    record(
        Scenario(
            key="20-worker-killed-mid-job",
            title="A worker SIGKILLed mid-job",
            what=(
                f"Two workers (lease {LEASE_S:g} s, heartbeat {HEARTBEAT_S:g} s, rescue every"
                f" {RESCUE_INTERVAL_S:g} s); the one running a {CRASH_SLEEP_S:g} s job is"
                " SIGKILLed."
            ),
            test="tests/e2e/test_e2e_crash_recovery.py::"
            "test_a_job_whose_worker_is_killed_is_rescued_and_completed_by_the_other_worker",
            acknowledged=1,
            completed=int(final["Status"] == "completed"),
            lost=int(final["Status"] != "completed"),
            run_twice=1,
            recover_s=recovered_s,
            recover_what="from the SIGKILL to the job completed by the other worker",
        )
    )
    logs = stack.logs()
    assert final["Status"] == "completed", f"{final}\n{logs}"
    assert final["Attempts"] == 2, f"{final}\n{logs}"
    assert final["ErrorMessage"] is None, f"{final}\n{logs}"
    survivor_id = worker_id(survivor)
    assert owners[-1:] == [survivor_id], f"{owners} (first run: {first_owner})\n{logs}"
    assert owners[0] in {first_owner, survivor_id}, f"{owners}\n{logs}"
    assert finished_lines(survivor, job_id) == [(2, "completed", "completed")], logs
    assert finished_lines(victim, job_id) == [], logs
    rescued = [
        (line["status"], line["lost_worker"])
        for w in workers
        for line in w.events("job_rescued")
        if line.get("job_id") == str(job_id)
    ]
    assert rescued == [("pending", first_owner)], f"{rescued}\n{logs}"


# -- cancel of a running job ---------------------------------------------------------------


def test_cancelling_a_running_job_stops_it_within_two_heartbeats_and_the_worker_carries_on(
    stack: Stack, db_url: str
) -> None:
    api = stack.spawn_api(db_url)
    worker = stack.spawn_worker(db_url, "worker", {**FAST_LEASE_ENV, "WORKER_CONCURRENCY": "1"})
    stack.wait_ready(api, worker)

    with api.client() as client:
        job_id = enqueue(client, {"type": "sleep", "payload": {"seconds": 30}})
        wait_for_status(stack, client, job_id, statuses={"running"}, timeout_s=RUNNING_TIMEOUT_S)

        response = client.post(f"/v1/jobs/{job_id}/cancel")
        assert response.status_code == 202, f"{response.status_code} {response.text}"
        assert response.json()["Status"] == "running", response.text

        cancelled = wait_for_status(
            stack,
            client,
            job_id,
            statuses={"cancelled", "completed", "failed"},
            timeout_s=2 * JITTER * HEARTBEAT_S + SLACK_S,
        )
        # The only slot is free again: a following job runs on the same, healthy worker.
        follow_up = enqueue(client, {"type": "noop", "payload": {"after": "cancel"}})
        follow_up_final = wait_for_status(stack, client, follow_up)

    logs = stack.logs()
    assert cancelled["Status"] == "cancelled", f"{cancelled}\n{logs}"
    assert cancelled["Attempts"] == 1, f"{cancelled}\n{logs}"
    assert cancelled["ErrorMessage"] == "cancelled on request", f"{cancelled}\n{logs}"
    assert finished_lines(worker, job_id) == [(1, "cancelled", "cancelled")], logs
    assert follow_up_final["Status"] == "completed", f"{follow_up_final}\n{logs}"
    assert worker.proc.popen.poll() is None, logs
    assert http_ok(worker.probe_url), logs


# -- shutdown with a job still running after the grace period ------------------------------

GRACE_S = 1.0


def test_sigterm_after_the_grace_period_releases_the_job_with_its_attempt_given_back(
    stack: Stack, db_url: str
) -> None:
    short_grace = {**FAST_LEASE_ENV, "WORKER_SHUTDOWN_GRACE_S": str(GRACE_S)}
    api = stack.spawn_api(db_url)
    first = stack.spawn_worker(db_url, "worker-a", short_grace)
    stack.wait_ready(api, first)

    with api.client() as client:
        job_id = enqueue(client, {"type": "sleep", "payload": {"seconds": 30}})
        wait_for_status(stack, client, job_id, statuses={"running"}, timeout_s=RUNNING_TIMEOUT_S)

        first.proc.signal(signal.SIGTERM)
        code = exit_code(first, GRACE_S + SLACK_S)
        assert code == 0, f"worker exit status {code}\n{stack.logs()}"

        released = job_status(client, job_id)
        row = job_row(db_url, job_id)
        logs = stack.logs()
        assert released["Status"] == "pending", f"{released}\n{logs}"
        assert released["Attempts"] == 0, f"{released}\n{logs}"
        assert released["ScheduledAt"] is None, f"{released}\n{logs}"  # due again at once
        assert row["lease_owner"] is None, f"{dict(row)}\n{logs}"
        assert finished_lines(first, job_id) == [(1, "released", "pending")], logs
        lifecycle = [
            name
            for name in first.event_names()
            if name in {"worker_draining", "worker_releasing_jobs", "worker_stopped"}
        ]
        assert lifecycle == ["worker_draining", "worker_releasing_jobs", "worker_stopped"], logs

        # Another worker takes over: it runs new work and picks the released job up.
        second = stack.start_worker(db_url, "worker-b", short_grace)
        noop = enqueue(client, {"type": "noop", "payload": {"after": "release"}})
        noop_final = wait_for_status(stack, client, noop)
        retaken = wait_for_status(
            stack, client, job_id, statuses={"running"}, timeout_s=RUNNING_TIMEOUT_S
        )
        retaken_row = job_row(db_url, job_id)

    logs = stack.logs()
    assert noop_final["Status"] == "completed", f"{noop_final}\n{logs}"
    assert retaken["Attempts"] == 1, f"{retaken}\n{logs}"  # the released attempt was not counted
    assert retaken_row["lease_owner"] == worker_id(second), f"{dict(retaken_row)}\n{logs}"


# -- a job over its own timeout ------------------------------------------------------------


def test_a_job_over_its_own_timeout_fails_with_a_timed_out_message(
    stack: Stack, db_url: str
) -> None:
    api = stack.spawn_api(db_url)
    worker = stack.spawn_worker(db_url, "worker")
    stack.wait_ready(api, worker)

    with api.client() as client:
        job_id = enqueue(
            client,
            {"type": "sleep", "payload": {"seconds": 10}, "timeout_s": 0.5, "max_attempts": 1},
        )
        final = wait_for_status(stack, client, job_id, timeout_s=RUNNING_TIMEOUT_S)

    logs = stack.logs()
    assert job_row(db_url, job_id)["timeout_s"] == 0.5
    assert final["Status"] == "failed", f"{final}\n{logs}"
    assert final["Attempts"] == 1, f"{final}\n{logs}"
    assert final["ErrorMessage"] == "timed out after 0.5 s", f"{final}\n{logs}"
    assert finished_lines(worker, job_id) == [(1, "failed", "failed")], logs


# -- a database outage under the API and a worker ------------------------------------------

OUTAGE_SLEEP_S = 1.5
NOOP: Mapping[str, Any] = {"type": "noop", "payload": {"n": 1}}


def test_api_and_worker_ride_out_a_database_outage_and_recover_by_themselves(
    stack: Stack, db_url: str, db_proxy: tuple[TcpProxy, str]
) -> None:
    """Through a proxy the test cuts: it works against any PostgreSQL, ours or not."""
    proxy, proxied_url = db_proxy
    api = stack.spawn_api(proxied_url)
    worker = stack.spawn_worker(proxied_url, "worker")  # the default 30 s lease outlives it
    stack.wait_ready(api, worker)
    alive = [api.proc, worker.proc]

    with api.client() as client:
        # Both processes hold pooled connections the outage will reset; a job is mid-run.
        warm = enqueue(client, dict(NOOP))
        assert wait_for_status(stack, client, warm)["Status"] == "completed"
        in_flight = enqueue(client, {"type": "sleep", "payload": {"seconds": OUTAGE_SLEEP_S}})
        wait_for_status(stack, client, in_flight, statuses={"running"}, timeout_s=10)

        proxy.down()
        try:
            stack.wait(
                lambda: ready_status(client) == 503,
                what="/ready 503 during the outage",
                alive=alive,
                timeout_s=10,
            )
            refused = [client.post("/jobs", json=dict(NOOP)) for _ in range(2)]
            # Keep the database away until the worker has met the outage in its claim loop and
            # the in-flight job has ended with nowhere to record its outcome.
            stack.wait(
                lambda: service_retried(worker, "claim") and outcome_retried(worker),
                what="the worker's claim and outcome recording failing during the outage",
                alive=alive,
                timeout_s=OUTAGE_SLEEP_S + SLACK_S,
            )
        finally:
            proxy.up()
            back_at = time.monotonic()

        stack.wait(
            lambda: ready_status(client) == 200,
            what="/ready 200 after the outage",
            alive=alive,
            timeout_s=10,
        )
        ready_s = time.monotonic() - back_at
        after = enqueue(client, dict(NOOP))
        after_final = wait_for_status(stack, client, after)
        in_flight_final = wait_for_status(stack, client, in_flight)
        recovered_s = time.monotonic() - back_at

    completed = [f["Status"] for f in (after_final, in_flight_final)].count("completed")
    record(
        Scenario(
            key="40-database-outage",
            title="The database unreachable under the API and a worker",
            what=(
                "The network to PostgreSQL cut (a proxy that refuses and resets connections)"
                " while a job runs, until the worker has failed to claim and to record the"
                " job's outcome; then restored. Two POSTs during the outage get 503."
            ),
            test="tests/e2e/test_e2e_crash_recovery.py::"
            "test_api_and_worker_ride_out_a_database_outage_and_recover_by_themselves",
            acknowledged=2,  # the job running through the outage, and one enqueued after
            completed=completed,
            lost=2 - completed,
            run_twice=int(in_flight_final["Attempts"] != 1),
            recover_s=recovered_s,
            recover_what=(
                "from the network's return to a new job enqueued and completed, and the"
                " interrupted job's outcome recorded"
            ),
            extra={"from the network's return to /ready 200 (s)": round(ready_s, 2)},
        )
    )

    logs = stack.logs()
    for response in refused:
        assert response.status_code == 503, f"{response.status_code} {response.text}\n{logs}"
        assert response.json()["detail"] == "database unavailable, try again shortly", logs
    assert after_final["Status"] == "completed", f"{after_final}\n{logs}"
    # The job that ran through the outage was recorded once the database was back.
    assert in_flight_final["Status"] == "completed", f"{in_flight_final}\n{logs}"
    assert in_flight_final["Attempts"] == 1, f"{in_flight_final}\n{logs}"
    assert all(p.popen.poll() is None for p in alive), logs
    assert "database_reachable_again" in worker.event_names(), logs
    assert http_ok(worker.probe_url), logs
    rows = run_sync(_count_jobs(db_url))
    assert rows == 3, f"{rows} jobs stored; the refused POSTs must store nothing\n{logs}"


async def _count_jobs(database_url: str) -> int:
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM jobs")
    finally:
        await conn.close()
    return count
