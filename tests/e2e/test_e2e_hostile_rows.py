"""No row in ``jobs`` can stop the fleet: rows written straight into the table, as a hand edit or
an old bug would leave them, while the API and two workers run. The schema refuses what would
poison a statement; every other odd row ends in a clear state, and the fleet keeps working."""

import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg
import httpx
import pytest

from e2e.stack import Stack, enqueue, job_status, wait_for_status
from pg_provider import run_sync

pytestmark = pytest.mark.e2e

DEEP = 5000  # PostgreSQL holds it; Python's decoders stop near 1,000

# What the schema refuses outright (each would once have failed a claim, /metrics or a read).
REFUSED: Mapping[str, dict[str, str]] = {
    "scheduled -infinity": {"scheduled_at": "'-infinity'"},
    "scheduled infinity": {"scheduled_at": "'infinity'"},
    "scheduled in year 1": {"scheduled_at": "'0001-01-01T00:00:00Z'"},
    "created before Christ": {"created_at": "'0044-03-15 BC'"},
    "NaN timeout": {"timeout_s": "'NaN'"},
    "infinite timeout": {"timeout_s": "'Infinity'"},
    "pending, no attempts left": {"attempts": "2147483647", "max_attempts": "2147483647"},
}


def _row_sql(**columns: str) -> str:
    names = ", ".join(["id", *columns])
    values = ", ".join(["gen_random_uuid()", *columns.values()])
    return f"INSERT INTO jobs ({names}) VALUES ({values}) RETURNING id"


# Odd rows the schema holds: each with the status it must end in, and text its error must carry.
ODD: Mapping[str, tuple[dict[str, str], str, str | None]] = {
    "top priority": ({"type": "'noop'", "payload": "'{}'", "priority": "32767"}, "completed", None),
    "bottom priority": (
        {"type": "'noop'", "payload": "'{}'", "priority": "-32768"},
        "completed",
        None,
    ),
    "empty type": ({"type": "''", "payload": "'{}'"}, "failed", "no handler"),
    "longest type": ({"type": "repeat('x', 255)", "payload": "'{}'"}, "failed", "no handler"),
    "odd type": (
        {"type": "E'\\U0001F4A5 \\t ; DROP TABLE jobs'", "payload": "'{}'"},
        "failed",
        None,
    ),
    "payload too deep to decode": (
        {"type": "'noop'", "payload": f"(repeat('[', {DEEP}) || repeat(']', {DEEP}))::jsonb"},
        "failed",
        "payload cannot be decoded: nested too deeply, or a number too long to read",
    ),
    "number too long to read": (
        {"type": "'noop'", "payload": "'{\"n\": 1e5000}'"},
        "failed",
        "payload cannot be decoded: nested too deeply, or a number too long to read",
    ),
    "payload is an array": (
        {"type": "'send_email'", "payload": "'[1, 2]'", "max_attempts": "1"},
        "failed",
        "payload is not a JSON object (it is a JSON array)",
    ),
    "payload is null": (
        {"type": "'noop'", "payload": "'null'"},
        "failed",
        "payload is not a JSON object (it is a JSON null)",
    ),
    "number beyond a float": ({"type": "'noop'", "payload": "'{\"n\": 1e400}'"}, "completed", None),
    "earliest schedule": (
        {"type": "'noop'", "payload": "'{}'", "scheduled_at": "'1970-01-01T00:00:00Z'"},
        "completed",
        None,
    ),
    "a microsecond to run": (
        {
            "type": "'sleep'",
            "payload": "'{\"seconds\": 5}'",
            "timeout_s": "1e-6",
            "max_attempts": "1",
        },
        "failed",
        "timed out",
    ),
    "leased to a worker long gone": (
        {
            "type": "'noop'",
            "payload": "'{}'",
            "status": "'running'",
            "attempts": "1",
            "lease_owner": "'ghost:1:dead'",
            "lease_expires_at": "now() - interval '1 hour'",
        },
        "completed",
        None,
    ),
}


# Rows an older version stored, each with the status it must end in and text its error carries.
INHERITED: Mapping[str, tuple[str, str, str]] = {
    "scheduled -infinity": ("'-infinity'", "completed", ""),
    "scheduled infinity": ("'infinity'", "failed", "could never run"),
}


def _migrate(stack: Stack, database_url: str, revision: str) -> None:
    proc = stack.spawn(
        f"migrate-{revision}", ["queue-migrate", revision], {"DATABASE_URL": database_url}
    )
    assert proc.wait(timeout_s=60) == 0, stack.logs()


async def _write_inherited_rows(database_url: str) -> dict[str, uuid.UUID]:
    conn = await asyncpg.connect(database_url)
    try:
        return {
            name: await conn.fetchval(
                _row_sql(type="'noop'", payload="'{}'", scheduled_at=scheduled_at)
            )
            for name, (scheduled_at, _, _) in INHERITED.items()
        }
    finally:
        await conn.close()


async def _write_rows(database_url: str) -> tuple[list[str], dict[str, uuid.UUID]]:
    conn = await asyncpg.connect(database_url)
    try:
        refused = []
        for name, columns in REFUSED.items():
            try:
                await conn.fetchval(_row_sql(type="'noop'", payload="'{}'", **columns))
            except asyncpg.CheckViolationError:
                refused.append(name)
        written = {
            name: await conn.fetchval(_row_sql(**cols)) for name, (cols, _, _) in ODD.items()
        }
    finally:
        await conn.close()
    return refused, written


def test_hostile_rows_end_in_clear_states_and_the_fleet_keeps_working(
    stack: Stack, empty_db_url: str
) -> None:
    # Rows the API stored before schema 0004 (year 1 and year 9999 became ±infinity), then the
    # upgrade a deploy runs, with the real queue-migrate.
    _migrate(stack, empty_db_url, "0003")
    inherited = run_sync(_write_inherited_rows(empty_db_url))
    stack.migrate(empty_db_url)
    api = stack.spawn_api(empty_db_url)
    # Rescue often, so the row leased to a long-gone worker comes back within the test.
    env = {"WORKER_CONCURRENCY": "4", "WORKER_RESCUE_INTERVAL_S": "0.5"}
    workers = [stack.spawn_worker(empty_db_url, f"worker-{n}", env) for n in "ab"]
    stack.wait_ready(api, *workers)
    with api.client() as client:
        before = [enqueue(client, {"type": "noop", "payload": {"n": n}}) for n in range(20)]
        refused, written = run_sync(_write_rows(empty_db_url))
        after = [enqueue(client, {"type": "noop", "payload": {"n": n}}) for n in range(20)]

        assert refused == list(REFUSED), "the schema let a poisoning row in"
        for name, job_id in inherited.items():
            _, inherited_status, inherited_error = INHERITED[name]
            body = wait_for_status(stack, client, job_id)
            assert body["Status"] == inherited_status, (name, body)
            assert inherited_error in (body["ErrorMessage"] or ""), (name, body)
        for name, job_id in written.items():
            _, status, error = ODD[name]
            body = wait_for_status(stack, client, job_id)  # GET /jobs/status reads every row
            assert body["Status"] == status, (name, body)
            if error is not None:
                assert error in (body["ErrorMessage"] or ""), (name, body)
        for job_id in before + after:
            assert wait_for_status(stack, client, job_id)["Status"] == "completed"

        # Every process still up and healthy, every metrics endpoint answering.
        for worker in workers:
            assert worker.proc.popen.poll() is None, stack.logs()
            assert httpx.get(worker.probe_url, timeout=5).status_code == 200
            assert httpx.get(worker.probe_url.replace("/healthz", "/metrics"), timeout=5).is_success
        assert client.get("/metrics").status_code == 200
        assert client.get("/ready").status_code == 200
        # And they still run new work.
        last = enqueue(client, {"type": "noop", "payload": {"n": "last"}})
        assert wait_for_status(stack, client, last)["Status"] == "completed"
        assert _status_of(client, written["payload too deep to decode"])["Payload"] is None


def _status_of(client: httpx.Client, job_id: uuid.UUID) -> dict[str, Any]:
    return job_status(client, job_id)
