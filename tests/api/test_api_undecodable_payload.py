"""A stored payload nested too deeply for Python to decode (written straight into the table,
or before the API bounded nesting): every endpoint that shows the job answers 200 with
``"Payload": null`` and the rest of the job, instead of a 500."""

from uuid import UUID, uuid4

import asyncpg
import pytest

from api.support import ApiClient

DEPTH = 5000  # jsonb holds it; msgspec and json.loads give up near 1,000


@pytest.fixture(name="job_id")
async def fx_job_id(db: asyncpg.Connection) -> UUID:
    job_id = uuid4()
    await db.execute(
        "INSERT INTO jobs (id, type, payload)"
        " VALUES ($1, 'noop', (repeat('[', $2) || repeat(']', $2))::jsonb)",
        job_id,
        DEPTH,
    )
    return job_id


async def test_get_status_answers_200_with_a_null_payload(client: ApiClient, job_id: UUID) -> None:
    response = await client.get("/jobs/status", params={"id": str(job_id)})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["Payload"] is None
    assert (body["ID"], body["Type"], body["Status"]) == (str(job_id), "noop", "pending")


async def test_cancel_answers_200_with_a_null_payload(client: ApiClient, job_id: UUID) -> None:
    response = await client.post(f"/v1/jobs/{job_id}/cancel")

    assert response.status_code == 200, response.text
    assert (response.json()["Payload"], response.json()["Status"]) == (None, "cancelled")


async def test_retry_answers_200_with_a_null_payload(
    client: ApiClient, db: asyncpg.Connection, job_id: UUID
) -> None:
    await db.execute(
        "UPDATE jobs SET status = 'failed', attempts = max_attempts, finished_at = now()"
        " WHERE id = $1",
        job_id,
    )

    response = await client.post(f"/v1/jobs/{job_id}/retry")

    assert response.status_code == 200, response.text
    assert (response.json()["Payload"], response.json()["Status"]) == (None, "pending")
