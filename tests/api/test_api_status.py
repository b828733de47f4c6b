"""GET /jobs/status: the seed's PascalCase object, 404 for an unknown id, 400 for a bad one."""

import http.client
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import asyncpg
import pytest

from api.support import SEED_SEND_EMAIL, ApiClient, assert_no_internals, error_body, problem_text
from e2e.stack import Api

SEED_KEYS = {
    "ID",
    "Type",
    "Payload",
    "Status",
    "Attempts",
    "MaxAttempts",
    "ErrorMessage",
    "ScheduledAt",
    "CreatedAt",
    "UpdatedAt",
}
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def parse_rfc3339(value: object) -> datetime:
    assert isinstance(value, str), value
    assert RFC3339.fullmatch(value), f"not an RFC 3339 timestamp: {value!r}"
    parsed = datetime.fromisoformat(value)  # Python 3.11 reads the "Z" suffix itself
    assert parsed.tzinfo is not None
    return parsed


async def enqueue(client: ApiClient, body: dict[str, Any]) -> UUID:
    response = await client.post("/jobs", json=body)
    assert response.status_code == 201, response.text
    return UUID(response.json()["id"].removeprefix("Message of id: "))


async def test_get_status_of_a_new_job_returns_exactly_the_seed_keys_and_values(
    client: ApiClient, db: asyncpg.Connection
) -> None:
    job_id = await enqueue(client, SEED_SEND_EMAIL)

    response = await client.get("/jobs/status", params={"id": str(job_id)})

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == SEED_KEYS
    assert {k: v for k, v in body.items() if k not in {"CreatedAt", "UpdatedAt"}} == {
        "ID": str(job_id),
        "Type": "send_email",
        "Payload": SEED_SEND_EMAIL["payload"],
        "Status": "pending",
        "Attempts": 0,
        "MaxAttempts": 3,
        "ErrorMessage": None,
        "ScheduledAt": None,
    }
    row = await db.fetchrow("SELECT created_at, updated_at FROM jobs WHERE id = $1", job_id)
    assert row is not None
    assert parse_rfc3339(body["CreatedAt"]) == row["created_at"]
    assert parse_rfc3339(body["UpdatedAt"]) == row["updated_at"]


async def test_get_status_shows_scheduled_at_and_max_attempts_as_enqueued(
    client: ApiClient,
) -> None:
    job_id = await enqueue(
        client, {**SEED_SEND_EMAIL, "scheduled_at": "2030-01-02T03:04:05+02:00", "max_attempts": 7}
    )

    body = (await client.get(f"/jobs/status?id={job_id}")).json()

    assert parse_rfc3339(body["ScheduledAt"]) == datetime(2030, 1, 2, 1, 4, 5, tzinfo=UTC)
    assert body["MaxAttempts"] == 7
    assert body["Status"] == "pending"


async def test_get_status_shows_the_error_message_and_attempts_of_a_failed_job(
    client: ApiClient, db: asyncpg.Connection
) -> None:
    job_id = await enqueue(client, SEED_SEND_EMAIL)
    await db.execute(
        "UPDATE jobs SET status = 'failed', attempts = 3, error_message = $2,"
        " finished_at = now(), updated_at = now() + interval '1 second' WHERE id = $1",
        job_id,
        "SMTP said no",
    )

    body = (await client.get(f"/jobs/status?id={job_id}")).json()

    assert (body["Status"], body["Attempts"], body["ErrorMessage"]) == ("failed", 3, "SMTP said no")
    assert parse_rfc3339(body["UpdatedAt"]) > parse_rfc3339(body["CreatedAt"])


async def test_get_status_accepts_an_uppercase_id(client: ApiClient) -> None:
    job_id = await enqueue(client, SEED_SEND_EMAIL)

    response = await client.get(f"/jobs/status?id={str(job_id).upper()}")

    assert response.status_code == 200
    assert response.json()["ID"] == str(job_id)


async def test_get_status_of_an_unknown_id_answers_404_naming_the_id(
    shared_client: ApiClient,
) -> None:
    unknown = uuid4()

    response = await shared_client.get(f"/jobs/status?id={unknown}")

    assert response.status_code == 404
    assert error_body(response) == {"status_code": 404, "detail": f"job {unknown} not found"}


async def test_get_status_without_an_id_answers_400_naming_the_parameter(
    shared_client: ApiClient,
) -> None:
    response = await shared_client.get("/jobs/status")

    assert response.status_code == 400
    assert error_body(response) == {
        "status_code": 400,
        "detail": "Missing required query parameter 'id' for path /jobs/status",
    }


@pytest.mark.parametrize(
    "bad_id",
    [
        pytest.param("", id="empty"),
        pytest.param("zz", id="garbage"),
        pytest.param("1234", id="number"),
        pytest.param("a1b2c3d4-e5f6-7890-1234-567890abcdeg", id="non-hex"),
        pytest.param("a1b2c3d4-e5f6-7890-1234-567890abcde", id="short"),
        pytest.param("' OR 1=1 --", id="sql"),
    ],
)
async def test_get_status_with_a_malformed_id_answers_400_naming_the_parameter(
    shared_client: ApiClient, bad_id: str
) -> None:
    response = await shared_client.get("/jobs/status", params={"id": bad_id})

    assert response.status_code == 400
    body = error_body(response)
    assert body["extra"] == [{"message": "Invalid UUID", "key": "id", "source": "query"}]
    assert "id: Invalid UUID" in problem_text(body)


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("id=%00", id="nul"),
        pytest.param("id=%ED%A0%80", id="encoded-surrogate"),
        pytest.param("id=%FF%FE", id="invalid-utf8"),
        pytest.param("id=%", id="truncated-escape"),
        pytest.param("id=" + "a" * 10_000, id="ten-thousand-characters"),
        pytest.param("id=a1b2c3d4-e5f6-7890-1234-567890abcdef&id=zz", id="two-ids"),
        pytest.param("id[]=a1b2c3d4-e5f6-7890-1234-567890abcdef", id="array-syntax"),
    ],
)
async def test_get_status_with_a_hostile_query_answers_a_json_400(
    shared_client: ApiClient, query: str
) -> None:
    response = await shared_client.get(f"/jobs/status?{query}")

    assert response.status_code == 400, response.text
    error_body(response)
    assert_no_internals(response)


@pytest.mark.parametrize("size", [100_000, 1_000_000])
def test_a_query_string_too_long_for_the_server_gets_400_and_it_carries_on(
    api_process: Api, size: int
) -> None:
    """A request line this long is refused before the app sees it, never with a 5xx or a hang:
    by uvicorn's HTTP parser (a 400 in plain text, not our JSON shape), or by the bound on a
    request's head (a 431, ``queue_api.http_protocol``) when more than that arrives before the
    parser gives up. (http.client, because httpx refuses to send a URL over 64 KiB.)"""
    address = urlsplit(api_process.base_url)
    conn = http.client.HTTPConnection(address.netloc, timeout=10)
    try:
        conn.request("GET", f"/jobs/status?id={'a' * size}")
        assert conn.getresponse().status in {400, 431}
    finally:
        conn.close()

    with api_process.client() as client:
        assert client.get("/health").status_code == 200
