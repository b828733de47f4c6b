"""POST /v1/jobs/{id}/cancel and /retry against the real app and database, and the per-job
``timeout_s`` of POST /jobs. Statuses a request cannot reach by itself (running, completed,
failed) are set straight in the table, the way a worker would leave them."""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest

from api.support import (
    SEED_SEND_EMAIL,
    ApiClient,
    Outage,
    assert_no_internals,
    error_body,
    problem_text,
)
from queue_core.limits import MAX_TIMEOUT_S
from queue_core.queue import Queue

LEASE_OWNER = "test-host:4242:0badc0de"
FINAL_STATUSES = ("completed", "failed", "cancelled")
MALFORMED_IDS = [
    pytest.param("zz", id="garbage"),
    pytest.param("1234", id="number"),
    pytest.param("a1b2c3d4-e5f6-7890-1234-567890abcdeg", id="non-hex"),
    pytest.param("a1b2c3d4-e5f6-7890-1234-567890abcde", id="short"),
]


async def enqueue(client: ApiClient, body: dict[str, Any]) -> UUID:
    response = await client.post("/jobs", json=body)
    assert response.status_code == 201, response.text
    return UUID(response.json()["id"].removeprefix("Message of id: "))


async def set_running(db: asyncpg.Connection, job_id: UUID) -> None:
    """What a worker's claim leaves: running, one attempt used, leased for a while."""
    await db.execute(
        "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_owner = $2,"
        " lease_expires_at = now() + interval '30 seconds', started_at = now()"
        " WHERE id = $1",
        job_id,
        LEASE_OWNER,
    )


async def set_finished(db: asyncpg.Connection, job_id: UUID, status: str) -> None:
    """What a worker leaves once the job ended in ``status`` after its last attempt."""
    await db.execute(
        "UPDATE jobs SET status = $2::text, attempts = max_attempts, lease_owner = NULL,"
        " lease_expires_at = NULL, started_at = now() - interval '1 second',"
        " finished_at = now(),"
        " error_message = CASE WHEN $2::text = 'completed' THEN NULL ELSE 'boom' END"
        " WHERE id = $1",
        job_id,
        status,
    )


async def job_row(db: asyncpg.Connection, job_id: UUID) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
    assert row is not None, job_id
    return row


# -- cancel --------------------------------------------------------------------------------


async def test_cancel_of_a_pending_job_answers_200_with_the_cancelled_status_body(
    client: ApiClient, db: asyncpg.Connection
) -> None:
    job_id = await enqueue(client, SEED_SEND_EMAIL)

    response = await client.post(f"/v1/jobs/{job_id}/cancel")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert {k: v for k, v in body.items() if k not in {"CreatedAt", "UpdatedAt"}} == {
        "ID": str(job_id),
        "Type": "send_email",
        "Payload": SEED_SEND_EMAIL["payload"],
        "Status": "cancelled",
        "Attempts": 0,
        "MaxAttempts": 3,
        "ErrorMessage": None,
        "ScheduledAt": None,
    }
    row = await job_row(db, job_id)
    assert row["status"] == "cancelled"
    assert row["finished_at"] is not None
    assert (await client.get(f"/jobs/status?id={job_id}")).json()["Status"] == "cancelled"


async def test_cancel_of_a_job_scheduled_in_the_future_answers_200_cancelled(
    client: ApiClient, db: asyncpg.Connection
) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    job_id = await enqueue(client, {**SEED_SEND_EMAIL, "scheduled_at": later.isoformat()})

    response = await client.post(f"/v1/jobs/{job_id}/cancel")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["Status"] == "cancelled"
    assert datetime.fromisoformat(body["ScheduledAt"]) == later
    assert (await job_row(db, job_id))["status"] == "cancelled"


async def test_cancel_of_a_cancelled_pending_job_is_never_claimed(
    client: ApiClient, queue: Queue
) -> None:
    job_id = await enqueue(client, SEED_SEND_EMAIL)
    assert (await client.post(f"/v1/jobs/{job_id}/cancel")).status_code == 200

    claimed = await queue.claim(worker_id=LEASE_OWNER, queues=["default"], limit=10, lease_s=30)

    assert claimed == []


async def test_cancel_of_a_running_job_answers_202_and_records_the_request(
    client: ApiClient, db: asyncpg.Connection
) -> None:
    job_id = await enqueue(client, SEED_SEND_EMAIL)
    await set_running(db, job_id)

    response = await client.post(f"/v1/jobs/{job_id}/cancel")

    assert response.status_code == 202, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert (body["ID"], body["Status"], body["Attempts"]) == (str(job_id), "running", 1)
    row = await job_row(db, job_id)
    assert row["status"] == "running"  # its worker stops it at its next heartbeat
    assert row["cancel_requested_at"] is not None
    assert row["lease_owner"] == LEASE_OWNER  # the lease stays with the worker running it
    assert row["finished_at"] is None


async def test_cancel_of_a_running_job_twice_keeps_the_first_request_time(
    client: ApiClient, db: asyncpg.Connection
) -> None:
    job_id = await enqueue(client, SEED_SEND_EMAIL)
    await set_running(db, job_id)
    assert (await client.post(f"/v1/jobs/{job_id}/cancel")).status_code == 202
    first = (await job_row(db, job_id))["cancel_requested_at"]

    again = await client.post(f"/v1/jobs/{job_id}/cancel")

    assert again.status_code == 202, again.text
    assert (await job_row(db, job_id))["cancel_requested_at"] == first


@pytest.mark.parametrize("status", FINAL_STATUSES)
async def test_cancel_of_a_finished_job_answers_409_naming_its_status(
    client: ApiClient, db: asyncpg.Connection, status: str
) -> None:
    job_id = await enqueue(client, SEED_SEND_EMAIL)
    await set_finished(db, job_id, status)
    before = await job_row(db, job_id)

    response = await client.post(f"/v1/jobs/{job_id}/cancel")

    assert response.status_code == 409, response.text
    body = error_body(response)
    assert body["detail"] == (
        f"job {job_id} is {status}: only pending or running jobs can be cancelled"
    )
    assert_no_internals(response)
    assert await job_row(db, job_id) == before  # left exactly as it was


async def test_cancel_of_an_unknown_id_answers_404_naming_the_id(
    shared_client: ApiClient,
) -> None:
    unknown = uuid4()

    response = await shared_client.post(f"/v1/jobs/{unknown}/cancel")

    assert response.status_code == 404, response.text
    assert error_body(response) == {"status_code": 404, "detail": f"job {unknown} not found"}


@pytest.mark.parametrize("bad_id", MALFORMED_IDS)
async def test_cancel_with_a_malformed_id_answers_400_json(
    shared_client: ApiClient, bad_id: str
) -> None:
    response = await shared_client.post(f"/v1/jobs/{bad_id}/cancel")

    assert response.status_code == 400, response.text
    body = error_body(response)
    assert "job_id" in problem_text(body), body
    assert_no_internals(response)


async def test_cancel_answers_503_while_the_database_is_down_then_recovers(
    outage: Outage, db: asyncpg.Connection
) -> None:
    client, proxy = outage.client, outage.proxy
    job_id = await enqueue(client, SEED_SEND_EMAIL)  # a pooled connection the outage resets

    proxy.down()
    # The first request meets the reset pooled connection, the second a refused new one.
    responses = [await client.post(f"/v1/jobs/{job_id}/cancel") for _ in range(2)]
    proxy.up()

    for response in responses:
        assert response.status_code == 503, response.text
        assert error_body(response) == {
            "status_code": 503,
            "detail": "database unavailable, try again shortly",
        }
        assert response.headers.get("retry-after") == "1"
        assert_no_internals(response)
    assert (await job_row(db, job_id))["status"] == "pending"

    recovered = await client.post(f"/v1/jobs/{job_id}/cancel")
    assert recovered.status_code == 200, recovered.text
    assert recovered.json()["Status"] == "cancelled"


async def test_retry_answers_503_while_the_database_is_down(outage: Outage) -> None:
    client, proxy = outage.client, outage.proxy
    job_id = await enqueue(client, SEED_SEND_EMAIL)
    assert (await client.post(f"/v1/jobs/{job_id}/cancel")).status_code == 200

    proxy.down()
    responses = [await client.post(f"/v1/jobs/{job_id}/retry") for _ in range(2)]
    proxy.up()

    assert [r.status_code for r in responses] == [503, 503], [r.text for r in responses]
    for response in responses:
        assert_no_internals(response)


# -- retry ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["failed", "cancelled"])
async def test_retry_of_a_failed_or_cancelled_job_puts_it_back_to_pending_with_fresh_attempts(
    client: ApiClient, db: asyncpg.Connection, status: str
) -> None:
    job_id = await enqueue(client, {**SEED_SEND_EMAIL, "max_attempts": 5})
    await set_finished(db, job_id, status)
    # A failed job may still carry the instant of its last scheduled retry.
    await db.execute(
        "UPDATE jobs SET scheduled_at = now() - interval '1 minute',"
        " cancel_requested_at = CASE WHEN status = 'cancelled' THEN now() END WHERE id = $1",
        job_id,
    )

    response = await client.post(f"/v1/jobs/{job_id}/retry")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert {k: v for k, v in body.items() if k not in {"CreatedAt", "UpdatedAt"}} == {
        "ID": str(job_id),
        "Type": "send_email",
        "Payload": SEED_SEND_EMAIL["payload"],
        "Status": "pending",
        "Attempts": 0,
        "MaxAttempts": 5,
        "ErrorMessage": "boom",  # the last error stays until the next outcome
        "ScheduledAt": None,
    }
    row = await job_row(db, job_id)
    assert (row["status"], row["attempts"], row["scheduled_at"]) == ("pending", 0, None)
    assert row["cancel_requested_at"] is None
    assert row["finished_at"] is None
    assert row["started_at"] is None


async def test_retry_of_a_job_cancelled_while_running_forgets_the_old_cancel_request(
    client: ApiClient, db: asyncpg.Connection, queue: Queue
) -> None:
    """The cancel request of the first run must not cancel the retried run."""
    job_id = await enqueue(client, SEED_SEND_EMAIL)
    await set_running(db, job_id)
    assert (await client.post(f"/v1/jobs/{job_id}/cancel")).status_code == 202
    await db.execute(  # the worker acted on the request at its heartbeat
        "UPDATE jobs SET status = 'cancelled', lease_owner = NULL, lease_expires_at = NULL,"
        " finished_at = now() WHERE id = $1",
        job_id,
    )

    assert (await client.post(f"/v1/jobs/{job_id}/retry")).status_code == 200
    claimed = await queue.claim(worker_id="w:1:a", queues=["default"], limit=10, lease_s=30)

    assert [(job.id, job.attempt) for job in claimed] == [(job_id, 1)]
    row = await job_row(db, job_id)
    assert (row["status"], row["lease_owner"]) == ("running", "w:1:a")
    assert row["cancel_requested_at"] is None  # its heartbeats will not stop it


async def test_retry_of_a_cancelled_pending_job_makes_it_claimable_again(
    client: ApiClient, queue: Queue
) -> None:
    job_id = await enqueue(client, SEED_SEND_EMAIL)
    assert (await client.post(f"/v1/jobs/{job_id}/cancel")).status_code == 200

    assert (await client.post(f"/v1/jobs/{job_id}/retry")).status_code == 200
    claimed = await queue.claim(worker_id="w:1:a", queues=["default"], limit=10, lease_s=30)

    assert [job.id for job in claimed] == [job_id]


@pytest.mark.parametrize("status", ["pending", "running", "completed"])
async def test_retry_of_a_pending_running_or_completed_job_answers_409_naming_its_status(
    client: ApiClient, db: asyncpg.Connection, status: str
) -> None:
    job_id = await enqueue(client, SEED_SEND_EMAIL)
    if status == "running":
        await set_running(db, job_id)
    elif status == "completed":
        await set_finished(db, job_id, status)
    before = await job_row(db, job_id)

    response = await client.post(f"/v1/jobs/{job_id}/retry")

    assert response.status_code == 409, response.text
    assert error_body(response)["detail"] == (
        f"job {job_id} is {status}: only failed or cancelled jobs can be retried"
    )
    assert_no_internals(response)
    assert await job_row(db, job_id) == before


async def test_retry_of_a_dependant_whose_dependency_was_cancelled_answers_409_naming_it(
    client: ApiClient, db: asyncpg.Connection
) -> None:
    parent = await enqueue(client, {**SEED_SEND_EMAIL, "scheduled_at": "2099-01-01T00:00:00Z"})
    child = await enqueue(client, {**SEED_SEND_EMAIL, "depends_on": [str(parent)]})
    assert (await client.post(f"/v1/jobs/{parent}/cancel")).status_code == 200
    before = await job_row(db, child)
    assert before["status"] == "cancelled"

    response = await client.post(f"/v1/jobs/{child}/retry")

    assert response.status_code == 409, response.text
    assert error_body(response)["detail"] == (
        f"job {child} cannot be retried: its dependency {parent} is cancelled; retry that job first"
    )
    assert await job_row(db, child) == before
    assert (await client.post(f"/v1/jobs/{parent}/retry")).status_code == 200
    assert (await client.post(f"/v1/jobs/{child}/retry")).json()["Status"] == "pending"


async def test_retry_of_an_unknown_id_answers_404_naming_the_id(
    shared_client: ApiClient,
) -> None:
    unknown = uuid4()

    response = await shared_client.post(f"/v1/jobs/{unknown}/retry")

    assert response.status_code == 404, response.text
    assert error_body(response) == {"status_code": 404, "detail": f"job {unknown} not found"}


@pytest.mark.parametrize("bad_id", MALFORMED_IDS)
async def test_retry_with_a_malformed_id_answers_400_json(
    shared_client: ApiClient, bad_id: str
) -> None:
    response = await shared_client.post(f"/v1/jobs/{bad_id}/retry")

    assert response.status_code == 400, response.text
    body = error_body(response)
    assert "job_id" in problem_text(body), body
    assert_no_internals(response)


# -- POST /jobs timeout_s ------------------------------------------------------------------


@pytest.mark.parametrize("timeout_s", [0.5, 2, 86400, MAX_TIMEOUT_S])
async def test_post_jobs_stores_timeout_s(
    client: ApiClient, db: asyncpg.Connection, timeout_s: float
) -> None:
    job_id = await enqueue(client, {**SEED_SEND_EMAIL, "timeout_s": timeout_s})

    assert (await job_row(db, job_id))["timeout_s"] == timeout_s


async def test_post_jobs_without_timeout_s_stores_null(
    client: ApiClient, db: asyncpg.Connection
) -> None:
    job_id = await enqueue(client, SEED_SEND_EMAIL)

    assert (await job_row(db, job_id))["timeout_s"] is None


@pytest.mark.parametrize(
    "timeout_s",
    [
        pytest.param(0, id="zero"),
        pytest.param(-1, id="negative"),
        pytest.param(MAX_TIMEOUT_S + 0.5, id="over-a-week"),
        pytest.param(int(MAX_TIMEOUT_S) + 1, id="over-a-week-int"),
        pytest.param("5", id="string"),
        pytest.param(True, id="bool"),
    ],
)
async def test_post_jobs_with_a_bad_timeout_s_answers_400_naming_it_and_stores_nothing(
    shared_client: ApiClient, shared_db: asyncpg.Connection, timeout_s: object
) -> None:
    count_before = await shared_db.fetchval("SELECT count(*) FROM jobs")

    response = await shared_client.post("/jobs", json={**SEED_SEND_EMAIL, "timeout_s": timeout_s})

    assert response.status_code == 400, response.text
    body = error_body(response)
    assert "timeout_s" in problem_text(body), body
    assert await shared_db.fetchval("SELECT count(*) FROM jobs") == count_before


# -- OpenAPI -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "operation_id"),
    [("/v1/jobs/{job_id}/cancel", "cancelJob"), ("/v1/jobs/{job_id}/retry", "retryJob")],
)
async def test_openapi_lists_the_job_actions_with_their_operation_ids(
    shared_client: ApiClient, path: str, operation_id: str
) -> None:
    response = await shared_client.get("/schema/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]

    operation = paths.get(path, {}).get("post")

    assert operation is not None, sorted(paths)
    assert operation["operationId"] == operation_id
    (job_id,) = [p for p in operation.get("parameters", []) if p["name"] == "job_id"]
    assert job_id["in"] == "path"
    assert job_id["required"] is True


async def test_openapi_documents_both_success_statuses_of_cancel(
    shared_client: ApiClient,
) -> None:
    """A client generated from the document must know that 202 (cancel requested, still
    running) is a success, as the operation's own description says."""
    document = (await shared_client.get("/schema/openapi.json")).json()

    responses = document["paths"]["/v1/jobs/{job_id}/cancel"]["post"]["responses"]

    assert {"200", "202"} <= set(responses), sorted(responses)
