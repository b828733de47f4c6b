"""POST /jobs on good input: the seed's answer, what is stored, and the optional fields."""

import json
import re
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest

from api.support import SEED_SEND_EMAIL, ApiClient

CREATED_ID = re.compile(
    r"Message of id: (?P<id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
)


def created_job_id(response: httpx.Response) -> UUID:
    """Check a 201 answer has the seed's exact shape, and return the job's id."""
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    match = CREATED_ID.fullmatch(body["id"])
    assert match is not None, body
    job_id = UUID(match["id"])
    assert body == {"message": "Message successfully received", "id": f"Message of id: {job_id}"}
    assert response.headers["location"] == f"/jobs/status?id={job_id}"
    return job_id


async def stored_job(db: asyncpg.Connection, job_id: UUID) -> dict[str, Any]:
    row = await db.fetchrow(
        "SELECT type, payload, status, attempts, max_attempts, error_message, scheduled_at,"
        " queue, priority FROM jobs WHERE id = $1",
        job_id,
    )
    assert row is not None, f"job {job_id} was not stored"
    job = dict(row)
    job["payload"] = json.loads(job["payload"])  # a bare connection reads jsonb as text
    return job


async def test_post_jobs_accepts_the_seed_send_email_example_with_201_and_stores_it_pending(
    client: ApiClient, db: asyncpg.Connection
) -> None:
    response = await client.post("/jobs", json=SEED_SEND_EMAIL)

    job_id = created_job_id(response)
    assert await stored_job(db, job_id) == {
        "type": "send_email",
        "payload": SEED_SEND_EMAIL["payload"],
        "status": "pending",
        "attempts": 0,
        "max_attempts": 3,
        "error_message": None,
        "scheduled_at": None,
        "queue": "default",
        "priority": 0,
    }
    assert await db.fetchval("SELECT count(*) FROM jobs") == 1


async def test_post_jobs_location_header_leads_to_the_new_jobs_status(client: ApiClient) -> None:
    job_id = created_job_id(await client.post("/jobs", json=SEED_SEND_EMAIL))

    response = await client.get(f"/jobs/status?id={job_id}")

    assert response.status_code == 200
    assert response.json()["ID"] == str(job_id)


async def test_post_jobs_gives_each_job_its_own_id(
    client: ApiClient, db: asyncpg.Connection
) -> None:
    ids = {created_job_id(await client.post("/jobs", json=SEED_SEND_EMAIL)) for _ in range(3)}

    assert len(ids) == 3
    assert await db.fetchval("SELECT count(*) FROM jobs") == 3


async def test_post_jobs_stores_the_optional_queue_priority_max_attempts_and_scheduled_at(
    client: ApiClient, db: asyncpg.Connection
) -> None:
    body = {
        **SEED_SEND_EMAIL,
        "queue": "emails",
        "priority": 7,
        "max_attempts": 5,
        "scheduled_at": "2030-01-02T03:04:05.250+02:00",
    }

    job_id = created_job_id(await client.post("/jobs", json=body))

    job = await stored_job(db, job_id)
    assert (job["queue"], job["priority"], job["max_attempts"]) == ("emails", 7, 5)
    assert job["scheduled_at"] == datetime(2030, 1, 2, 1, 4, 5, 250_000, tzinfo=UTC)
    assert (job["status"], job["attempts"]) == ("pending", 0)


@pytest.mark.parametrize(
    ("scheduled_at", "instant"),
    [
        pytest.param("2030-06-01T12:00:00Z", datetime(2030, 6, 1, 12, tzinfo=UTC), id="zulu"),
        pytest.param(
            "2030-06-01T12:00:00-07:30", datetime(2030, 6, 1, 19, 30, tzinfo=UTC), id="neg"
        ),
        pytest.param("2001-01-01T00:00:00+00:00", datetime(2001, 1, 1, tzinfo=UTC), id="past"),
    ],
)
async def test_post_jobs_stores_scheduled_at_as_the_instant_its_offset_names(
    client: ApiClient, db: asyncpg.Connection, scheduled_at: str, instant: datetime
) -> None:
    job_id = created_job_id(
        await client.post("/jobs", json={**SEED_SEND_EMAIL, "scheduled_at": scheduled_at})
    )

    assert (await stored_job(db, job_id))["scheduled_at"] == instant


async def test_post_jobs_accepts_an_explicit_null_scheduled_at(
    client: ApiClient, db: asyncpg.Connection
) -> None:
    job_id = created_job_id(
        await client.post("/jobs", json={**SEED_SEND_EMAIL, "scheduled_at": None})
    )

    assert (await stored_job(db, job_id))["scheduled_at"] is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("priority", -32768, id="priority-min"),
        pytest.param("priority", 32767, id="priority-max"),
        pytest.param("max_attempts", 1, id="max_attempts-min"),
        pytest.param("max_attempts", 1000, id="max_attempts-max"),
    ],
)
async def test_post_jobs_accepts_and_stores_the_bounds_of_priority_and_max_attempts(
    client: ApiClient, db: asyncpg.Connection, field: str, value: int
) -> None:
    job_id = created_job_id(await client.post("/jobs", json={**SEED_SEND_EMAIL, field: value}))

    assert (await stored_job(db, job_id))[field] == value


async def test_post_jobs_stores_a_nested_payload_unchanged(
    client: ApiClient, db: asyncpg.Connection
) -> None:
    payload = {
        "to": ["a@example.com", "b@example.com"],
        "meta": {"retry": True, "weight": 1.5, "tags": [], "note": None},
        "unicode": "héllo ✉ 你好",
        "big": 12345678901234567890,
    }

    job_id = created_job_id(await client.post("/jobs", json={"type": "t", "payload": payload}))

    assert (await stored_job(db, job_id))["payload"] == payload


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.api+json",
    ],
)
async def test_post_jobs_accepts_every_json_media_type(
    client: ApiClient, content_type: str
) -> None:
    response = await client.post(
        "/jobs", content=json.dumps(SEED_SEND_EMAIL), headers={"content-type": content_type}
    )

    created_job_id(response)
