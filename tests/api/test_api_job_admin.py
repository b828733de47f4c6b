"""DELETE /v1/jobs/{id}, and POST /v1/jobs/cancel and /v1/jobs/retry, which act on every job a
filter matches, in batches, with the single cancel's and retry's own statements."""

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from api.support import ApiClient, ClientFactory, assert_no_internals, error_body, problem_text
from queue_core.bulk import BATCH_SIZE, MAX_BULK_SCAN
from queue_core.db import create_pool
from queue_core.jobs import NewJob
from queue_core.keys import KeyStore, Scope
from queue_core.listing import encode_cursor
from queue_core.queue import Queue

WORKER = "test-host:1:cafe"


@pytest.fixture(name="pool")
async def fx_pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(db_url, max_size=3)
    yield pool
    await pool.close()


@pytest.fixture(name="queue")
def fx_queue(pool: asyncpg.Pool) -> Queue:
    return Queue(pool)


async def add(
    jobs: Queue,
    count: int = 1,
    *,
    type: str = "noop",  # noqa: A002
    queue: str = "default",
) -> list[uuid.UUID]:
    return await jobs.enqueue_many(
        [NewJob(type=type, payload={"i": i}, queue=queue) for i in range(count)]
    )


async def set_status(db: asyncpg.Connection, ids: list[uuid.UUID], status: str) -> None:
    """What a worker leaves: running with a lease, or finished after its last attempt."""
    await db.execute(
        "UPDATE jobs SET status = $2::text, attempts = CASE WHEN $2::text = 'running' THEN 1"
        "     ELSE max_attempts END,"
        " lease_owner = CASE WHEN $2::text = 'running' THEN 'w:1' END,"
        " lease_expires_at = CASE WHEN $2::text = 'running' THEN now() + interval '1 minute' END,"
        " started_at = now(),"
        " finished_at = CASE WHEN $2::text <> 'running' THEN now() END"
        " WHERE id = ANY($1::uuid[])",
        ids,
        status,
    )


async def statuses(db: asyncpg.Connection, ids: list[uuid.UUID]) -> list[str]:
    rows = await db.fetch("SELECT id, status FROM jobs WHERE id = ANY($1::uuid[])", ids)
    by_id = {r["id"]: r["status"] for r in rows}
    return [by_id.get(i, "gone") for i in ids]


# -- DELETE /v1/jobs/{id} ------------------------------------------------------------------


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
async def test_a_finished_job_is_deleted_with_204(
    client: ApiClient, queue: Queue, db: asyncpg.Connection, status: str
) -> None:
    (job_id,) = await add(queue)
    await set_status(db, [job_id], status)

    response = await client.delete(f"/v1/jobs/{job_id}")

    assert response.status_code == 204, response.text
    assert response.content == b""
    assert await statuses(db, [job_id]) == ["gone"]
    assert (await client.get(f"/v1/jobs/{job_id}")).status_code == 404


@pytest.mark.parametrize("status", ["pending", "running"])
async def test_a_pending_or_running_job_is_not_deleted_409(
    client: ApiClient, queue: Queue, db: asyncpg.Connection, status: str
) -> None:
    (job_id,) = await add(queue)
    await set_status(db, [job_id], status) if status == "running" else None

    response = await client.delete(f"/v1/jobs/{job_id}")

    assert response.status_code == 409, response.text
    assert status in error_body(response)["detail"]
    assert await statuses(db, [job_id]) == [status]


async def test_deleting_an_unknown_job_is_404_and_a_malformed_id_400(
    shared_client: ApiClient,
) -> None:
    assert (await shared_client.delete(f"/v1/jobs/{uuid.uuid4()}")).status_code == 404
    malformed = await shared_client.delete("/v1/jobs/nope")
    assert malformed.status_code == 400
    assert_no_internals(malformed)


# -- POST /v1/jobs/cancel ----------------------------------------------------------------------


async def test_bulk_cancel_cancels_pending_asks_running_to_stop_and_leaves_the_rest(
    client: ApiClient, queue: Queue, db: asyncpg.Connection
) -> None:
    pending = await add(queue, 5, queue="a")
    running = await add(queue, 2, queue="a")
    done = await add(queue, 3, queue="a")
    elsewhere = await add(queue, 2, queue="b")
    await set_status(db, running, "running")
    await set_status(db, done, "completed")

    response = await client.post("/v1/jobs/cancel", json={"queue": ["a"], "limit": 100})

    assert response.status_code == 200, response.text
    assert response.json() == {"affected": 7, "next_cursor": None}
    assert await statuses(db, pending) == ["cancelled"] * 5
    assert await statuses(db, running) == ["running"] * 2
    requested = await db.fetchval(
        "SELECT count(*) FROM jobs WHERE id = ANY($1::uuid[]) AND cancel_requested_at IS NOT NULL",
        running,
    )
    assert requested == 2
    assert await statuses(db, done) == ["completed"] * 3
    assert await statuses(db, elsewhere) == ["pending"] * 2


async def test_bulk_cancel_stops_at_its_limit_newest_first(
    client: ApiClient, queue: Queue, db: asyncpg.Connection
) -> None:
    ids = await add(queue, 5)

    response = await client.post("/v1/jobs/cancel", json={"status": ["pending"], "limit": 2})

    assert response.json() == {"affected": 2, "next_cursor": encode_cursor(ids[3])}
    assert await statuses(db, ids) == ["pending"] * 3 + ["cancelled"] * 2


async def test_bulk_cancel_goes_on_from_the_cursor_it_answered(
    client: ApiClient, queue: Queue, db: asyncpg.Connection
) -> None:
    ids = await add(queue, 5)
    # Asked to stop by the first action, the running ones still match: the cursor, not their
    # status, keeps the second from taking them again.
    await set_status(db, ids[3:], "running")

    first = await client.post("/v1/jobs/cancel", json={"limit": 2})
    rest = await client.post(
        "/v1/jobs/cancel", json={"limit": 10, "cursor": first.json()["next_cursor"]}
    )

    assert first.json() == {"affected": 2, "next_cursor": encode_cursor(ids[3])}
    assert rest.status_code == 200, rest.text
    assert rest.json() == {"affected": 3, "next_cursor": None}
    assert await statuses(db, ids) == ["cancelled"] * 3 + ["running"] * 2


@pytest.mark.parametrize("action", ["cancel", "retry"])
async def test_a_bulk_action_matching_nothing_stops_at_its_bound_and_says_where_to_go_on(
    client: ApiClient, db: asyncpg.Connection, action: str
) -> None:
    # More finished jobs than one action walks, none of the type asked for: the reviewer's
    # {"limit":1,"type":["nope"]} read every one of them. Cancelled: retry walks them through
    # ix_jobs_failed_cancelled, cancel through the primary key.
    await db.execute(
        "INSERT INTO jobs (id, type, payload, status, attempts, started_at, finished_at)"
        " SELECT gen_random_uuid(), 'noop', '{}'::jsonb, 'cancelled', 1, now(), now()"
        " FROM generate_series(1, $1)",
        MAX_BULK_SCAN + 500,
    )
    bound = await db.fetchval(
        "SELECT id FROM jobs ORDER BY id DESC OFFSET $1 - 1 LIMIT 1", MAX_BULK_SCAN
    )
    body: dict[str, Any] = {"limit": 1, "type": ["nope"]}

    first = await client.post(f"/v1/jobs/{action}", json=body)
    rest = await client.post(
        f"/v1/jobs/{action}", json={**body, "cursor": first.json()["next_cursor"]}
    )

    assert first.status_code == 200, first.text
    assert first.json() == {"affected": 0, "next_cursor": encode_cursor(bound)}
    assert rest.json() == {"affected": 0, "next_cursor": None}  # the last 500: the end


# -- POST /v1/jobs/retry -----------------------------------------------------------------------


async def test_bulk_retry_takes_failed_and_cancelled_jobs_of_a_type_back_in_batches(
    client: ApiClient, queue: Queue, db: asyncpg.Connection
) -> None:
    failed = await add(queue, BATCH_SIZE + 150, type="mail")
    cancelled = await add(queue, 100, type="mail")
    other_type = await add(queue, 3, type="sms")
    done = await add(queue, 4, type="mail")
    await set_status(db, failed + other_type, "failed")
    await set_status(db, cancelled, "cancelled")
    await set_status(db, done, "completed")

    response = await client.post(
        "/v1/jobs/retry", json={"type": ["mail"], "limit": BATCH_SIZE + 200}
    )

    assert response.status_code == 200, response.text
    assert response.json() == {  # newest first: 50 failed left
        "affected": BATCH_SIZE + 200,
        "next_cursor": encode_cursor(failed[50]),
    }
    after = await statuses(db, failed + cancelled)
    assert after.count("pending") == BATCH_SIZE + 200
    assert after[:50] == ["failed"] * 50
    retried = await db.fetchrow(
        "SELECT min(attempts) AS lo, max(attempts) AS hi, count(finished_at) AS finished"
        " FROM jobs WHERE id = ANY($1::uuid[])",
        cancelled,
    )
    assert retried is not None
    assert (retried["lo"], retried["hi"], retried["finished"]) == (0, 0, 0)  # a fresh budget
    assert await statuses(db, other_type) == ["failed"] * 3
    assert await statuses(db, done) == ["completed"] * 4


async def test_bulk_retry_of_statuses_it_cannot_retry_changes_nothing(
    client: ApiClient, queue: Queue, db: asyncpg.Connection
) -> None:
    ids = await add(queue, 2)
    await set_status(db, ids, "completed")

    response = await client.post("/v1/jobs/retry", json={"status": ["completed"], "limit": 10})

    assert response.json() == {"affected": 0, "next_cursor": None}
    assert await statuses(db, ids) == ["completed"] * 2


async def test_bulk_retry_skips_a_job_whose_unique_key_another_job_holds(
    client: ApiClient, queue: Queue, db: asyncpg.Connection
) -> None:
    held, free = await add(queue, 2)
    (holder,) = await add(queue)
    await set_status(db, [held, free], "failed")
    await db.execute("UPDATE jobs SET unique_key = 'k' WHERE id = ANY($1::uuid[])", [held, holder])

    response = await client.post("/v1/jobs/retry", json={"limit": 10})

    assert response.json() == {"affected": 1, "next_cursor": None}
    assert await statuses(db, [held, free, holder]) == ["failed", "pending", "pending"]


# -- bad input and keys -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({}, "limit"),
        ({"limit": 0}, "limit"),
        ({"limit": 10_001}, "limit"),
        ({"limit": "5"}, "limit"),
        ({"limit": 5, "status": ["done"]}, "status"),
        ({"limit": 5, "type": []}, "type"),
        ({"limit": 5, "type": ["a\u0000b"]}, "type"),
        ({"limit": 5, "queue": [""]}, "queue"),
        ({"limit": 5, "created_after": "2026-12-04T10:00:00"}, "created_after"),
        ({"limit": 5, "finished_before": "2300-01-01T00:00:00Z"}, "finished_before"),
        ({"limit": 5, "everything": True}, "everything"),
        ({"limit": 5, "cursor": "nope"}, "cursor"),
        ({"limit": 5, "cursor": "A" * 65}, "cursor"),
        ({"limit": 5, "cursor": 5}, "cursor"),
        ({"limit": 5, "cursor": "AAAAAAAAAAAAAAAAAAAAAB"}, "cursor"),
    ],
)
@pytest.mark.parametrize("action", ["cancel", "retry"])
async def test_a_bad_bulk_body_is_a_400_naming_the_field(
    shared_client: ApiClient, body: dict[str, Any], key: str, action: str
) -> None:
    response = await shared_client.post(f"/v1/jobs/{action}", json=body)

    assert response.status_code == 400, response.text
    assert key in problem_text(error_body(response))
    assert_no_internals(response)


async def test_a_key_restricted_to_queues_acts_on_its_queues_only(
    make_client: ClientFactory,
    db_url: str,
    queue: Queue,
    pool: asyncpg.Pool,
    db: asyncpg.Connection,
) -> None:
    mine = await add(queue, 2, queue="mine")
    theirs = await add(queue, 2, queue="theirs")
    key = await KeyStore(pool).create(name="ops", scopes=[Scope.JOBS_ADMIN], queues=["mine"])

    async with make_client(db_url, key=key.secret) as client:
        everything = await client.post("/v1/jobs/cancel", json={"limit": 100})
        named = await client.post("/v1/jobs/cancel", json={"limit": 100, "queue": ["theirs"]})
        deleted = await client.delete(f"/v1/jobs/{theirs[0]}")

    assert everything.json() == {"affected": 2, "next_cursor": None}
    assert await statuses(db, mine + theirs) == ["cancelled"] * 2 + ["pending"] * 2
    assert named.status_code == 403
    assert deleted.status_code == 403
    assert "theirs" not in error_body(deleted)["detail"]


def _schema(document: dict[str, Any], name: str) -> dict[str, Any]:
    schema: dict[str, Any] = document["components"]["schemas"][name]
    return schema


async def test_the_openapi_document_describes_the_cursor_of_a_bulk_action(
    shared_client: ApiClient,
) -> None:
    document = (await shared_client.get("/schema/openapi.json")).json()
    action, result = _schema(document, "JobBulkAction"), _schema(document, "JobBulkResult")

    assert "cursor" in action["properties"]
    assert "cursor" not in action.get("required", [])
    assert sorted(result["required"]) == ["affected", "next_cursor"]
    assert "`cursor`" in result["properties"]["next_cursor"]["description"]
    for path in ("/v1/jobs/cancel", "/v1/jobs/retry"):
        assert "next_cursor" in document["paths"][path]["post"]["description"]
