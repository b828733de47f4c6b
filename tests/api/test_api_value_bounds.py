"""scheduled_at and timeout_s outside what the queue stores (queue_core.limits): a 400 that
names the field and states the accepted range, on every enqueue endpoint, and nothing stored.
The bounds themselves are accepted. Before, year 1 was stored as -infinity (which failed every
claim of its queue), year 9999 as +infinity, and "+14:00" variants got the driver's words."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from api.support import ApiClient, assert_no_internals, error_body
from queue_core.limits import MAX_TIMEOUT_S, SCHEDULED_AT_MAX, SCHEDULED_AT_MIN

JOB: dict[str, Any] = {"type": "noop", "payload": {"a": 1}}


def rfc3339(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


RANGE = f"from {rfc3339(SCHEDULED_AT_MIN)} up to, not including, {rfc3339(SCHEDULED_AT_MAX)}"


def single(job: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    """POST /jobs with ``job``: the path, the body, and the prefix of its fields' keys."""
    return "/jobs", job, ""


def in_batch(job: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    """POST /v1/jobs/batch with ``job`` fourth, after three valid ones."""
    return "/v1/jobs/batch", {"jobs": [JOB, JOB, JOB, job]}, "jobs[3]."


Endpoint = Callable[[dict[str, Any]], tuple[str, dict[str, Any], str]]
ENDPOINTS = [pytest.param(single, id="jobs"), pytest.param(in_batch, id="batch")]


async def post_storing_nothing(
    client: ApiClient, db: asyncpg.Connection, path: str, body: dict[str, Any]
) -> dict[str, Any]:
    before = await db.fetchval("SELECT count(*) FROM jobs")
    response = await client.post(path, json=body)
    assert response.status_code == 400, response.text
    assert_no_internals(response)
    assert await db.fetchval("SELECT count(*) FROM jobs") == before
    return error_body(response)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    "scheduled_at",
    [
        pytest.param("0001-01-01T00:00:00Z", id="year-1"),
        pytest.param("9999-12-31T23:59:59.999999Z", id="year-9999"),
        pytest.param("0001-01-01T00:00:00+14:00", id="before-year-1-in-utc"),
        pytest.param("9999-12-31T23:59:59-14:00", id="after-year-9999-in-utc"),
        pytest.param("1969-12-31T23:59:59Z", id="just-before-the-epoch"),
        pytest.param("1970-01-01T01:00:00+02:00", id="before-the-epoch-by-its-offset"),
        pytest.param("2200-01-01T00:00:00Z", id="the-upper-bound-itself"),
    ],
)
async def test_a_scheduled_at_outside_the_range_answers_400_stating_the_range(
    shared_client: ApiClient, shared_db: asyncpg.Connection, endpoint: Endpoint, scheduled_at: str
) -> None:
    path, body, prefix = endpoint({**JOB, "scheduled_at": scheduled_at})

    error = await post_storing_nothing(shared_client, shared_db, path, body)

    assert error["extra"] == [
        {"message": f"must be {RANGE}", "key": f"{prefix}scheduled_at", "source": "body"}
    ]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_a_scheduled_at_without_an_offset_answers_400_naming_the_field(
    shared_client: ApiClient, shared_db: asyncpg.Connection, endpoint: Endpoint
) -> None:
    path, body, prefix = endpoint({**JOB, "scheduled_at": "2030-01-01T00:00:00"})

    error = await post_storing_nothing(shared_client, shared_db, path, body)

    assert [item["key"] for item in error["extra"]] == [f"{prefix}scheduled_at"]
    assert "timezone offset" in error["extra"][0]["message"]


@pytest.mark.parametrize(
    ("scheduled_at", "stored"),
    [
        pytest.param("1970-01-01T00:00:00Z", SCHEDULED_AT_MIN, id="the-lower-bound"),
        pytest.param(
            "2199-12-31T23:59:59.999999Z",
            datetime(2199, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            id="just-below-the-upper-bound",
        ),
        pytest.param(
            "2200-01-01T01:00:00+02:00",
            datetime(2199, 12, 31, 23, tzinfo=UTC),
            id="inside-by-its-offset",
        ),
    ],
)
async def test_a_scheduled_at_inside_the_range_is_stored(
    client: ApiClient, db: asyncpg.Connection, scheduled_at: str, stored: datetime
) -> None:
    response = await client.post(
        "/v1/jobs/batch", json={"jobs": [{**JOB, "scheduled_at": scheduled_at}]}
    )

    assert response.status_code == 201, response.text
    assert await db.fetchval("SELECT scheduled_at FROM jobs") == stored


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    "timeout_s",
    [
        pytest.param(MAX_TIMEOUT_S + 0.5, id="over-a-week"),
        pytest.param(int(MAX_TIMEOUT_S) + 1, id="over-a-week-int"),
        pytest.param(1e300, id="huge"),
    ],
)
async def test_a_timeout_s_over_the_stored_maximum_answers_400_naming_the_field(
    shared_client: ApiClient,
    shared_db: asyncpg.Connection,
    endpoint: Endpoint,
    timeout_s: float,
) -> None:
    path, body, prefix = endpoint({**JOB, "timeout_s": timeout_s})

    error = await post_storing_nothing(shared_client, shared_db, path, body)

    assert error["extra"] == [
        {
            "message": f"Expected `float` <= {MAX_TIMEOUT_S}",
            "key": f"{prefix}timeout_s",
            "source": "body",
        }
    ]


async def test_the_longest_timeout_s_the_table_holds_is_stored(
    client: ApiClient, db: asyncpg.Connection
) -> None:
    response = await client.post("/jobs", json={**JOB, "timeout_s": MAX_TIMEOUT_S})

    assert response.status_code == 201, response.text
    assert await db.fetchval("SELECT timeout_s FROM jobs") == MAX_TIMEOUT_S
