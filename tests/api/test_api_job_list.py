"""GET /v1/jobs against the real app and database: filters, several statuses at once, keyset
pages that neither repeat nor skip a job while new jobs arrive, the cursor and limit bounds,
and keys restricted to some queues."""

import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from api.support import ApiClient, ClientFactory, assert_no_internals, error_body, problem_text
from queue_core.db import create_pool
from queue_core.jobs import NewJob
from queue_core.keys import KeyStore, Scope
from queue_core.listing import encode_cursor
from queue_core.queue import Queue

SUMMARY_FIELDS = {
    "id",
    "type",
    "queue",
    "status",
    "priority",
    "attempts",
    "max_attempts",
    "created_at",
    "scheduled_at",
    "started_at",
    "finished_at",
    "error_message",
}


@pytest.fixture(name="queue")
async def fx_queue(db_url: str) -> AsyncIterator[Queue]:
    pool = await create_pool(db_url, max_size=2)
    yield Queue(pool)
    await pool.close()


async def add(
    jobs: Queue,
    count: int,
    *,
    type: str = "noop",  # noqa: A002
    queue: str = "default",
) -> list[uuid.UUID]:
    """``count`` jobs in one statement (one created_at), ids in creation order."""
    job_type, job_queue = type, queue
    return await jobs.enqueue_many(
        [NewJob(type=job_type, payload={"i": i}, queue=job_queue) for i in range(count)]
    )


async def set_status(db: asyncpg.Connection, ids: list[uuid.UUID], status: str) -> None:
    """What a worker leaves: running with a lease, or finished a second after it was made."""
    await db.execute(
        "UPDATE jobs SET status = $2::text, attempts = 1,"
        " lease_owner = CASE WHEN $2::text = 'running' THEN 'w:1' END,"
        " lease_expires_at = CASE WHEN $2::text = 'running' THEN now() + interval '1 minute' END,"
        " started_at = created_at,"
        " finished_at = CASE WHEN $2::text IN ('completed', 'failed', 'cancelled')"
        "     THEN created_at + interval '1 second' END"
        " WHERE id = ANY($1::uuid[])",
        ids,
        status,
    )


async def listed(client: ApiClient, **params: Any) -> list[str]:
    """Every id the listing gives, following cursors. A list value repeats its parameter."""
    ids: list[str] = []
    cursor: str | None = None
    for _ in range(1000):
        page_params = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/v1/jobs", params=page_params)
        assert response.status_code == 200, response.text
        body = response.json()
        ids += [job["id"] for job in body["jobs"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return ids
    raise AssertionError("more than 1000 pages")


def newest_first(ids: list[uuid.UUID]) -> list[str]:
    return [str(i) for i in sorted(ids, reverse=True)]


async def test_listing_is_newest_first_with_the_summary_fields_only(
    client: ApiClient, queue: Queue
) -> None:
    ids = [*await add(queue, 3), *await add(queue, 2, type="other")]

    response = await client.get("/v1/jobs")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_cursor"] is None
    assert [job["id"] for job in body["jobs"]] == newest_first(ids)
    for job in body["jobs"]:
        assert set(job) == SUMMARY_FIELDS  # no payload, result or errors
        assert job["status"] == "pending"
        assert job["attempts"] == 0
        assert job["max_attempts"] == 3


async def test_an_empty_table_lists_no_job_and_no_cursor(client: ApiClient) -> None:
    response = await client.get("/v1/jobs", params={"status": "failed"})

    assert response.status_code == 200, response.text
    assert response.json() == {"jobs": [], "next_cursor": None}


async def test_a_repeated_status_matches_any_of_its_values(
    client: ApiClient, queue: Queue, db: asyncpg.Connection
) -> None:
    pending = await add(queue, 2)
    failed = await add(queue, 2)
    cancelled = await add(queue, 2)
    completed = await add(queue, 2)
    running = await add(queue, 1)
    await set_status(db, failed, "failed")
    await set_status(db, cancelled, "cancelled")
    await set_status(db, completed, "completed")
    await set_status(db, running, "running")

    assert await listed(client, status=["failed", "cancelled"]) == newest_first(failed + cancelled)
    assert await listed(client, status="failed") == newest_first(failed)
    assert await listed(client, status="pending") == newest_first(pending)
    assert await listed(client, status="running") == newest_first(running)
    assert await listed(client, status="completed") == newest_first(completed)
    assert await listed(client) == newest_first(pending + failed + cancelled + completed + running)


async def test_type_and_queue_filters_combine_with_each_other_and_with_status(
    client: ApiClient, queue: Queue, db: asyncpg.Connection
) -> None:
    mail_a = await add(queue, 3, type="mail", queue="a")
    mail_b = await add(queue, 2, type="mail", queue="b")
    sms_a = await add(queue, 2, type="sms", queue="a")
    await set_status(db, mail_a[:1] + sms_a[:1], "failed")

    assert await listed(client, type="mail") == newest_first(mail_a + mail_b)
    assert await listed(client, queue="a") == newest_first(mail_a + sms_a)
    assert await listed(client, type="mail", queue="a") == newest_first(mail_a)
    assert await listed(client, queue=["a", "b"], type="sms") == newest_first(sms_a)
    assert await listed(client, status="failed", queue="a", type="mail") == [str(mail_a[0])]
    assert await listed(client, type="nothing-of-this-type") == []


async def test_created_and_finished_ranges_include_their_start_and_exclude_their_end(
    client: ApiClient, queue: Queue, db: asyncpg.Connection
) -> None:
    first, second, third = await add(queue, 2), await add(queue, 2), await add(queue, 2)
    created = {r["id"]: r["created_at"] for r in await db.fetch("SELECT id, created_at FROM jobs")}
    t2, t3 = created[second[0]], created[third[0]]
    assert created[first[0]] < t2 < t3  # one statement each, so one created_at each

    assert await listed(client, created_after=t2.isoformat()) == newest_first(second + third)
    assert await listed(client, created_before=t3.isoformat()) == newest_first(first + second)
    assert await listed(
        client, created_after=t2.isoformat(), created_before=t3.isoformat()
    ) == newest_first(second)

    await set_status(db, first + second, "completed")  # finished a second after creation
    done_2 = t2 + timedelta(seconds=1)
    assert await listed(client, finished_after=done_2.isoformat()) == newest_first(second)
    assert await listed(client, finished_before=done_2.isoformat()) == newest_first(first)
    in_an_hour = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert await listed(client, finished_after=in_an_hour) == []


async def test_paging_by_cursor_neither_repeats_nor_skips_a_job_while_new_jobs_arrive(
    client: ApiClient, queue: Queue
) -> None:
    before = await add(queue, 237)
    seen: list[str] = []
    arrived: list[uuid.UUID] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 20, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/v1/jobs", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["jobs"]) <= 20
        seen += [job["id"] for job in body["jobs"]]
        pages += 1
        arrived += await add(queue, 5)  # newer than every cursor: never on a later page
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert pages == 12  # 11 full pages and one of 17
    assert seen == newest_first(before)
    # The new jobs are there for whoever starts again from the top.
    assert (await listed(client))[: len(arrived)] == newest_first(arrived)


async def test_a_page_exactly_full_at_the_end_gives_no_cursor(
    client: ApiClient, queue: Queue
) -> None:
    ids = await add(queue, 10)

    first = (await client.get("/v1/jobs", params={"limit": 5})).json()
    second = (
        await client.get("/v1/jobs", params={"limit": 5, "cursor": first["next_cursor"]})
    ).json()

    assert [j["id"] for j in first["jobs"] + second["jobs"]] == newest_first(ids)
    assert first["next_cursor"] is not None
    assert second["next_cursor"] is None


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("garbage", id="garbage"),
        pytest.param("A" * 21, id="short"),
        pytest.param("A" * 23, id="long"),
        pytest.param("AAAAAAAAAAAAAAAAAAAA!A", id="not-base64url"),
        pytest.param("AAAAAAAAAAAAAAAAAAAA+/", id="standard-base64"),
        pytest.param("AAAAAAAAAAAAAAAAAAAAAB", id="non-canonical"),
        pytest.param("é" * 22, id="non-ascii"),
        pytest.param("A" * 65, id="too-long-for-the-schema"),
    ],
)
async def test_a_cursor_the_api_did_not_make_is_a_400(
    shared_client: ApiClient, cursor: str
) -> None:
    response = await shared_client.get("/v1/jobs", params={"cursor": cursor})

    assert response.status_code == 400, response.text
    assert "cursor" in problem_text(error_body(response))
    assert_no_internals(response)


async def test_a_cursor_is_base64url_of_the_last_id(shared_client: ApiClient) -> None:
    last = uuid.UUID("01939a4e-0000-7000-8000-000000000000")
    cursor = encode_cursor(last)

    assert base64.urlsafe_b64decode(cursor + "==") == last.bytes
    response = await shared_client.get("/v1/jobs", params={"cursor": cursor})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": -1}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "done"}, "status"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_after": "2026-12-04T10:00:00"}, "created_after"),
        ({"finished_before": "1969-12-31T23:59:59Z"}, "finished_before"),
        ({"created_before": "2200-01-01T00:00:00Z"}, "created_before"),
        ({"finished_after": "9999-12-31T23:59:59Z"}, "finished_after"),
        ({"type": ""}, "type"),
        ({"type": "x" * 256}, "type"),
        ({"type": "a\x00b"}, "type"),
        ({"queue": [f"q{i}" for i in range(101)]}, "queue"),
    ],
)
async def test_bad_filters_and_limits_are_400s_naming_the_parameter(
    shared_client: ApiClient, params: dict[str, Any], key: str
) -> None:
    response = await shared_client.get("/v1/jobs", params=params)

    assert response.status_code == 400, response.text
    assert key in problem_text(error_body(response))
    assert_no_internals(response)


async def test_a_nul_in_a_filter_is_a_400_never_a_500(shared_client: ApiClient) -> None:
    response = await shared_client.get("/v1/jobs?type=a%00b")

    assert response.status_code == 400, response.text
    assert "type" in problem_text(error_body(response))
    assert_no_internals(response)


@pytest.mark.parametrize("query", ["queue=%ED%A0%80", "type=%FF%FE"], ids=["surrogate", "latin1"])
async def test_bytes_that_are_not_utf8_in_a_filter_match_nothing(
    shared_client: ApiClient, query: str
) -> None:
    """The server decodes them as U+FFFD (the replacement character), a name no job has."""
    response = await shared_client.get(f"/v1/jobs?{query}")

    assert response.status_code == 200, response.text
    assert response.json() == {"jobs": [], "next_cursor": None}


@pytest.mark.parametrize("limit", [1, 1000])
async def test_the_limit_bounds_are_accepted(client: ApiClient, queue: Queue, limit: int) -> None:
    ids = await add(queue, 3)

    body = (await client.get("/v1/jobs", params={"limit": limit})).json()

    assert [job["id"] for job in body["jobs"]] == newest_first(ids)[:limit]
    assert (body["next_cursor"] is None) == (limit >= 3)


async def test_the_default_page_is_100_jobs(client: ApiClient, queue: Queue) -> None:
    await add(queue, 101)

    body = (await client.get("/v1/jobs")).json()

    assert len(body["jobs"]) == 100
    assert body["next_cursor"] is not None


async def _reader_key(db_url: str, queues: list[str]) -> str:
    pool = await create_pool(db_url, max_size=1)
    try:
        name = f"reader-{uuid.uuid4().hex[:6]}"
        return (
            await KeyStore(pool).create(name=name, scopes=[Scope.JOBS_READ], queues=queues)
        ).secret
    finally:
        await pool.close()


async def test_a_key_restricted_to_queues_lists_only_their_jobs_and_may_not_name_others(
    make_client: ClientFactory, db_url: str, queue: Queue
) -> None:
    mine = await add(queue, 2, queue="mine")
    also = await add(queue, 2, queue="also-mine")
    await add(queue, 3, queue="theirs")
    key = await _reader_key(db_url, ["mine", "also-mine"])

    async with make_client(db_url, key=key) as client:
        assert await listed(client) == newest_first(mine + also)
        assert await listed(client, queue="mine") == newest_first(mine)
        refused = await client.get("/v1/jobs", params={"queue": ["mine", "theirs"]})

    assert refused.status_code == 403
    assert "theirs" in error_body(refused)["detail"]
