"""Server-side failures: a database outage is a 503 the client may retry, the API recovers from
it by itself, and no failure ever shows the client a trace, SQL or driver details."""

from uuid import UUID

import asyncpg
import httpx
import pytest
from structlog.typing import EventDict

from api.support import SEED_SEND_EMAIL, ApiClient, Outage, assert_no_internals, error_body

UNAVAILABLE = {"status_code": 503, "detail": "database unavailable, try again shortly"}


def assert_retryable_outage(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert error_body(response) == UNAVAILABLE
    retry_after = response.headers.get("retry-after")
    assert retry_after is not None
    assert retry_after.isdigit()
    assert int(retry_after) >= 1
    assert_no_internals(response)


async def enqueue(client: ApiClient) -> UUID:
    response = await client.post("/jobs", json=SEED_SEND_EMAIL)
    assert response.status_code == 201, response.text
    return UUID(response.json()["id"].removeprefix("Message of id: "))


async def test_post_jobs_answers_503_with_retry_after_while_the_database_is_down_then_recovers(
    outage: Outage, db: asyncpg.Connection, logs: list[EventDict]
) -> None:
    client, proxy = outage.client, outage.proxy
    await enqueue(client)  # a pooled connection now exists, and the outage will reset it

    proxy.down()
    # The first request meets the reset pooled connection, the second a refused new one.
    for _ in range(2):
        assert_retryable_outage(await client.post("/jobs", json=SEED_SEND_EMAIL))
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["database_unavailable"] * 2

    proxy.up()  # the same app, not restarted
    job_id = await enqueue(client)
    assert await db.fetchval("SELECT status FROM jobs WHERE id = $1", job_id) == "pending"
    assert await db.fetchval("SELECT count(*) FROM jobs") == 2  # the refused ones stored nothing


async def test_get_status_answers_503_with_retry_after_while_the_database_is_down_then_recovers(
    outage: Outage,
) -> None:
    client, proxy = outage.client, outage.proxy
    job_id = await enqueue(client)

    proxy.down()
    for _ in range(2):
        assert_retryable_outage(await client.get(f"/jobs/status?id={job_id}"))

    proxy.up()
    response = await client.get(f"/jobs/status?id={job_id}")
    assert response.status_code == 200
    assert response.json()["ID"] == str(job_id)


async def test_validation_errors_stay_400_while_the_database_is_down(outage: Outage) -> None:
    """Input is judged before the database is needed: a bad request is not a 503."""
    outage.proxy.down()

    bad_body = await outage.client.post("/jobs", json={"type": "t", "payload": {}})
    bad_id = await outage.client.get("/jobs/status?id=nope")

    assert (bad_body.status_code, bad_id.status_code) == (400, 400)


# Requests that today reach the catch-all handler: values that pass validation but that
# PostgreSQL or asyncpg refuse, and a body that is not UTF-8. They should become 400s (see
# test_api_bad_input.py); whatever their status, the body must not show what went wrong inside.
UNEXPECTED_FAILURES = [
    pytest.param(b'{"type":"t","payload":{"s":"\\u0000"}}', id="nul-in-jsonb"),
    pytest.param(b'{"type":"t\\u0000","payload":{"a":1}}', id="nul-in-text"),
    pytest.param(
        b'{"type":"t","payload":{"a":1},"scheduled_at":"0001-01-01T00:00:00+05:00"}',
        id="timestamp-overflow",
    ),
    pytest.param(b'{"type":"\xff","payload":{"a":1}}', id="invalid-utf8"),
]


@pytest.mark.parametrize("raw", UNEXPECTED_FAILURES)
async def test_an_unexpected_error_answers_json_without_internals(
    client: ApiClient, logs: list[EventDict], raw: bytes
) -> None:
    response = await client.post("/jobs", content=raw, headers={"content-type": "application/json"})

    assert response.status_code >= 400
    body = error_body(response)
    if response.status_code == 500:  # the catch-all's answer, word for word
        assert body == {"status_code": 500, "detail": "internal error"}
        # The details go to the log instead, with the exception for the traceback.
        (failed,) = [e for e in logs if e["event"] == "request_failed"]
        assert (failed["log_level"], failed["method"], failed["path"]) == ("error", "POST", "/jobs")
        assert isinstance(failed["exc_info"], BaseException)
    assert_no_internals(response)
