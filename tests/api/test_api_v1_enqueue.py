"""POST /v1/jobs (every option, the whole job back), and what every enqueue route shares: the
Idempotency-Key header (POST /jobs, POST /v1/jobs) and a batch item's idempotency_key, and
unique keys, checked against the real database, under concurrency too."""

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from api.support import LOCAL_BASE_URL, ApiClient, ClientFactory, bearer, error_body
from queue_core.db import create_pool
from queue_core.keys import KeyStore, Scope
from queue_core.queue import Queue

JOB: dict[str, Any] = {"type": "noop", "payload": {"n": 1}}
EVERY_OPTION: dict[str, Any] = {
    "type": "send_email",
    "payload": {"recipient": "a@example.com", "subject": "Hi", "body": "…"},
    "queue": "mail",
    "priority": 7,
    "max_attempts": 5,
    "scheduled_at": "2199-01-02T03:04:05+02:00",
    "timeout_s": 30,
    "unique_key": "welcome:a@example.com",
    "unique_for_s": 3600,
}
JOB_VIEW_FIELDS = {
    "id", "type", "payload", "queue", "priority", "status", "attempts", "max_attempts",
    "scheduled_at", "created_at", "updated_at", "started_at", "finished_at", "worker",
    "lease_expires_at", "timeout_s", "cancel_requested_at", "error_message", "result",
    "errors", "unique_key", "unique_until", "concurrency_key", "waiting_for", "depends_on",
}  # fmt: skip


def _key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


@pytest.fixture(name="queue")
async def fx_queue(db_url: str) -> AsyncIterator[Queue]:
    pool = await create_pool(db_url, max_size=2)
    yield Queue(pool)
    await pool.close()


async def _count(db: asyncpg.Connection) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM jobs")
    return count


async def _finish_all(queue: Queue) -> None:
    """Run every due job of the default queue to completion, as a worker would."""
    claimed = await queue.claim(worker_id="w", queues=["default"], limit=100, lease_s=30)
    await queue.complete(worker_id="w", job_ids=[job.id for job in claimed])


# -- POST /v1/jobs ----------------------------------------------------------------------------


async def test_post_v1_jobs_stores_every_option_and_answers_201_with_the_whole_job(
    client: ApiClient, db: asyncpg.Connection
) -> None:
    response = await client.post("/v1/jobs", json=EVERY_OPTION)

    assert response.status_code == 201, response.text
    job = response.json()
    assert set(job) == JOB_VIEW_FIELDS
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert "idempotent-replayed" not in response.headers
    assert "x-job-duplicate" not in response.headers
    assert {k: job[k] for k in ("type", "payload", "queue", "priority", "max_attempts")} == {
        k: EVERY_OPTION[k] for k in ("type", "payload", "queue", "priority", "max_attempts")
    }
    assert (job["status"], job["attempts"], job["timeout_s"]) == ("pending", 0, 30.0)
    assert datetime.fromisoformat(job["scheduled_at"]) == datetime(2199, 1, 2, 1, 4, 5, tzinfo=UTC)
    assert job["unique_key"] == "welcome:a@example.com"
    created = datetime.fromisoformat(job["created_at"])
    unique_until = datetime.fromisoformat(job["unique_until"])
    assert abs(unique_until - created - timedelta(hours=1)) < timedelta(seconds=5)
    assert job["errors"] == []
    assert job["result"] is None
    row = await db.fetchrow("SELECT * FROM jobs WHERE id = $1", uuid.UUID(job["id"]))
    assert row is not None
    assert (row["queue"], row["priority"], row["unique_key"]) == ("mail", 7, job["unique_key"])
    assert row["idempotency_key"] is None
    # The same shape as GET /v1/jobs/{id}.
    read = await client.get(f"/v1/jobs/{job['id']}")
    assert read.status_code == 200, read.text
    assert read.json() == job


async def test_post_v1_jobs_defaults_like_post_jobs(client: ApiClient) -> None:
    job = (await client.post("/v1/jobs", json=JOB)).json()

    assert (job["queue"], job["priority"], job["max_attempts"]) == ("default", 0, 3)
    assert (job["scheduled_at"], job["timeout_s"], job["unique_key"]) == (None, None, None)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({**JOB, "unique_for_s": 60}, "unique_for_s"),
        ({**JOB, "unique_key": "k", "unique_for_s": 0}, "unique_for_s"),
        ({**JOB, "unique_key": "k", "unique_for_s": 366 * 86400}, "unique_for_s"),
        ({**JOB, "unique_key": ""}, "unique_key"),
        ({**JOB, "unique_key": "   "}, "unique_key"),
        ({**JOB, "unique_key": "k" * 256}, "unique_key"),
        ({**JOB, "unique_key": "a\u0000b"}, "unique_key"),
        ({**JOB, "idempotency_key": "k"}, "idempotency_key"),  # a header here, not a field
        ({"type": "noop"}, "payload"),
        # Limits per key and dependencies (issue 19): every value bounded.
        ({**JOB, "concurrency_key": "c" * 256}, "concurrency_key"),
        ({**JOB, "concurrency_key": "a\u0000b"}, "concurrency_key"),
        ({**JOB, "concurrency_key": "c", "concurrency_limit": 0}, "concurrency_limit"),
        ({**JOB, "concurrency_key": "c", "concurrency_limit": -1}, "concurrency_limit"),
        ({**JOB, "concurrency_key": "c", "concurrency_limit": 10**12}, "concurrency_limit"),
        ({**JOB, "concurrency_key": "c", "rate_limit": -1}, "rate_limit"),
        ({**JOB, "concurrency_key": "c", "rate_limit": 1e300}, "rate_limit"),
        # Below one a day: one start moved the key's instant past a timestamp's range.
        ({**JOB, "concurrency_key": "c", "rate_limit": 1e-300}, "rate_limit"),
        ({**JOB, "concurrency_key": "c", "rate_limit": 1e-6}, "rate_limit"),
        ({**JOB, "depends_on": ["not-a-job-id"]}, "depends_on"),
        # Python's "$" matches before a final newline: the pattern let these through (a 500).
        ({**JOB, "depends_on": [f"{uuid.uuid4()}\n"]}, "depends_on"),
        ({**JOB, "depends_on": [str(uuid.uuid4())] * 101}, "depends_on"),
    ],
)
async def test_post_v1_jobs_refuses_bad_input_naming_the_field(
    shared_client: ApiClient, shared_db: asyncpg.Connection, body: dict[str, Any], key: str
) -> None:
    before = await _count(shared_db)

    response = await shared_client.post("/v1/jobs", json=body)

    assert response.status_code == 400, response.text
    assert key in str(error_body(response))
    assert await _count(shared_db) == before


@pytest.mark.parametrize(
    ("item", "key"),
    [
        ({**JOB, "idempotency_key": "order-1\n"}, "jobs[0].idempotency_key"),
        ({**JOB, "depends_on": ["$0\n"]}, "jobs[0].depends_on"),
    ],
)
async def test_post_v1_jobs_batch_refuses_a_value_with_a_trailing_newline(
    shared_client: ApiClient, shared_db: asyncpg.Connection, item: dict[str, Any], key: str
) -> None:
    before = await _count(shared_db)

    response = await shared_client.post("/v1/jobs/batch", json={"jobs": [item]})

    assert response.status_code == 400, response.text
    assert key in str(error_body(response))
    assert await _count(shared_db) == before


# -- Idempotency-Key ---------------------------------------------------------------------------


async def test_a_retry_with_the_same_idempotency_key_gets_the_same_job_with_200(
    client: ApiClient, db: asyncpg.Connection
) -> None:
    first = await client.post("/v1/jobs", json=JOB, headers=_key("order-1"))
    again = await client.post("/v1/jobs", json=JOB, headers=_key("order-1"))

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert set(again.json()) == JOB_VIEW_FIELDS
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    assert await _count(db) == 1
    stored = await db.fetchval("SELECT idempotency_key FROM jobs")
    assert stored == "key:test-admin/order-1"  # namespaced by the API key's name


async def test_the_seed_endpoint_replays_in_its_own_shape(
    client: ApiClient, db: asyncpg.Connection
) -> None:
    body = {**JOB, "payload": {"b": 2, "a": 1}}
    first = await client.post("/jobs", json=body, headers=_key("k"))
    reordered = {**JOB, "payload": {"a": 1, "b": 2}, "queue": "default"}  # the same job
    again = await client.post("/jobs", json=reordered, headers=_key("k"))
    via_v1 = await client.post("/v1/jobs", json=body, headers=_key("k"))

    assert (first.status_code, again.status_code, via_v1.status_code) == (201, 200, 200)
    assert again.json() == first.json()
    assert set(again.json()) == {"message", "id"}
    assert again.headers["idempotent-replayed"] == "true"
    assert first.json()["id"] == f"Message of id: {via_v1.json()['id']}"
    assert await _count(db) == 1


async def test_the_same_idempotency_key_with_another_job_is_422_and_stores_nothing(
    client: ApiClient, db: asyncpg.Connection
) -> None:
    await client.post("/v1/jobs", json=JOB, headers=_key("k"))

    response = await client.post("/v1/jobs", json={**JOB, "payload": {"n": 2}}, headers=_key("k"))

    assert response.status_code == 422, response.text
    assert "different request" in error_body(response)["detail"]
    assert await _count(db) == 1


@pytest.mark.parametrize(
    "value",
    [b"k" * 256, "clé".encode("latin-1"), b"a\x7fb", b"a\tb"],
    ids=["too-long", "not-ascii", "control", "tab"],
)
@pytest.mark.parametrize("path", ["/jobs", "/v1/jobs"])
async def test_an_idempotency_key_that_is_not_1_to_255_printable_ascii_is_400(
    shared_client: ApiClient, shared_db: asyncpg.Connection, path: str, value: bytes
) -> None:
    before = await _count(shared_db)

    response = await shared_client.post(path, json=JOB, headers={b"Idempotency-Key": value})

    assert response.status_code == 400, response.text
    (problem,) = error_body(response)["extra"]
    assert (problem["key"], problem["source"]) == ("idempotency_key", "header")
    assert await _count(shared_db) == before


async def test_two_api_keys_idempotency_keys_never_collide(
    client: ApiClient, db_url: str, db: asyncpg.Connection
) -> None:
    pool = await create_pool(db_url, max_size=1)
    try:
        other = (await KeyStore(pool).create(name="other", scopes=[Scope.JOBS_WRITE])).secret
    finally:
        await pool.close()

    mine = await client.post("/v1/jobs", json=JOB, headers=_key("same"))
    theirs = await client.post("/v1/jobs", json=JOB, headers={**_key("same"), **bearer(other)})

    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]
    assert await _count(db) == 2


async def test_idempotency_keys_work_with_auth_off(
    make_client: ClientFactory, db_url: str, db: asyncpg.Connection
) -> None:
    async with make_client(db_url, key=None, auth="off", base_url=LOCAL_BASE_URL) as client:
        first = await client.post("/v1/jobs", json=JOB, headers=_key("k"))
        again = await client.post("/v1/jobs", json=JOB, headers=_key("k"))

    assert (first.status_code, again.status_code) == (201, 200)
    assert await db.fetchval("SELECT idempotency_key FROM jobs") == "*/k"


async def test_twenty_concurrent_requests_with_one_idempotency_key_make_exactly_one_job(
    client: ApiClient, db: asyncpg.Connection
) -> None:
    responses = await asyncio.gather(
        *(client.post("/v1/jobs", json=JOB, headers=_key("race")) for _ in range(20))
    )

    assert Counter(r.status_code for r in responses) == {201: 1, 200: 19}
    assert len({r.json()["id"] for r in responses}) == 1
    assert await _count(db) == 1


async def test_an_expired_idempotency_key_may_be_used_again(
    make_client: ClientFactory, db_url: str, db: asyncpg.Connection
) -> None:
    async with make_client(db_url, idempotency_ttl_s=3600) as client:
        first = await client.post("/v1/jobs", json=JOB, headers=_key("k"))
        expires = await db.fetchval("SELECT idempotency_expires_at - now() FROM jobs")
        assert timedelta(minutes=59) < expires <= timedelta(hours=1)
        await db.execute("UPDATE jobs SET idempotency_expires_at = now() - interval '1 s'")
        again = await client.post("/v1/jobs", json={**JOB, "payload": {"n": 2}}, headers=_key("k"))

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] != first.json()["id"]


# -- unique keys --------------------------------------------------------------------------------


async def test_fifty_concurrent_enqueues_of_one_unique_key_make_one_job_and_say_so(
    client: ApiClient, db: asyncpg.Connection, queue: Queue
) -> None:
    body = {**JOB, "unique_key": "sync:acme"}
    responses = await asyncio.gather(*(client.post("/v1/jobs", json=body) for _ in range(50)))

    assert Counter(r.status_code for r in responses) == {201: 1, 200: 49}
    assert len({r.json()["id"] for r in responses}) == 1
    assert all(r.headers["x-job-duplicate"] == "true" for r in responses if r.status_code == 200)
    assert await _count(db) == 1

    await _finish_all(queue)  # the job is done: the key is free again
    after = await client.post("/v1/jobs", json=body)

    assert after.status_code == 201, after.text
    assert await _count(db) == 2


async def test_a_unique_period_is_honoured_after_the_job_finished(
    client: ApiClient, db: asyncpg.Connection, queue: Queue
) -> None:
    body = {**JOB, "unique_key": "daily-digest", "unique_for_s": 3600}
    first = await client.post("/v1/jobs", json=body)
    await _finish_all(queue)

    within = await client.post("/jobs", json=body)  # the seed endpoint too
    assert within.status_code == 200, within.text
    assert within.headers["x-job-duplicate"] == "true"
    assert within.json()["id"] == f"Message of id: {first.json()['id']}"

    await db.execute("UPDATE jobs SET unique_until = now() - interval '1 s'")
    after = await client.post("/v1/jobs", json=body)

    assert after.status_code == 201, after.text
    assert await _count(db) == 2


@pytest.mark.parametrize(
    ("scopes", "queues"),
    [
        ([Scope.JOBS_WRITE], None),  # may not read jobs at all
        ([Scope.JOBS_WRITE, Scope.JOBS_READ], ["mine"]),  # may not use the holder's queue
    ],
    ids=["write-only", "other-queue"],
)
async def test_a_duplicate_the_key_may_not_read_is_409_with_the_holders_id_and_nothing_else(
    client: ApiClient,
    db_url: str,
    db: asyncpg.Connection,
    scopes: list[Scope],
    queues: list[str] | None,
) -> None:
    pool = await create_pool(db_url, max_size=1)
    try:
        limited = (await KeyStore(pool).create(name="limited", scopes=scopes, queues=queues)).secret
    finally:
        await pool.close()
    secret_payload = {"recipient": "ceo@example.com", "subject": "merger"}
    holder = await client.post(
        "/v1/jobs",
        json={**JOB, "queue": "secret", "payload": secret_payload, "unique_key": "u"},
    )
    mine = {**JOB, "queue": "mine", "unique_key": "u"}

    v1 = await client.post("/v1/jobs", json=mine, headers=bearer(limited))
    seed = await client.post("/jobs", json=mine, headers=bearer(limited))

    holder_id = holder.json()["id"]
    assert v1.status_code == 409, v1.text
    assert v1.headers["x-job-duplicate"] == "true"
    assert holder_id in error_body(v1)["detail"]
    assert "merger" not in v1.text
    assert "secret" not in v1.text
    assert (seed.status_code, seed.headers["x-job-duplicate"]) == (200, "true")
    assert seed.json()["id"] == f"Message of id: {holder_id}"
    assert await _count(db) == 1


async def test_a_key_restricted_to_some_queues_cannot_depend_on_another_queues_job(
    client: ApiClient, db_url: str, db: asyncpg.Connection
) -> None:
    # A dependency's status shows in the dependant: depending on another tenant's job would be
    # a live view of it, which reading it directly (403) refuses. It is answered as a job that
    # does not exist, or the answer would tell that it does.
    pool = await create_pool(db_url, max_size=1)
    try:
        tenant = (
            await KeyStore(pool).create(
                name="tenant", scopes=[Scope.JOBS_WRITE, Scope.JOBS_READ], queues=["mine"]
            )
        ).secret
    finally:
        await pool.close()
    theirs = (await client.post("/v1/jobs", json={**JOB, "queue": "theirs"})).json()["id"]
    ours = (await client.post("/v1/jobs", json={**JOB, "queue": "mine"})).json()["id"]
    nowhere = str(uuid.uuid4())
    before = await _count(db)

    def as_unknown(response: Any, *ids: str) -> None:
        assert response.status_code == 400, response.text
        assert f"depends_on names jobs that do not exist: {', '.join(sorted(ids))}" in (
            response.text
        )
        assert "theirs" not in response.text

    mine = {**JOB, "queue": "mine"}
    for path, body, ids in (
        ("/v1/jobs", {**mine, "depends_on": [ours, theirs]}, [theirs]),
        ("/jobs", {**mine, "depends_on": [theirs]}, [theirs]),
        ("/v1/jobs", {**mine, "depends_on": [theirs, nowhere]}, [theirs, nowhere]),
        ("/v1/jobs/batch", {"jobs": [mine, {**mine, "depends_on": ["$0", theirs]}]}, [theirs]),
    ):
        as_unknown(await client.post(path, json=body, headers=bearer(tenant)), *ids)
    # The same answer as for an id no job has.
    unknown = {**mine, "depends_on": [nowhere]}
    as_unknown(await client.post("/v1/jobs", json=unknown, headers=bearer(tenant)), nowhere)
    assert await _count(db) == before

    allowed = {**mine, "depends_on": [ours]}
    assert (await client.post("/v1/jobs", json=allowed, headers=bearer(tenant))).status_code == 201
    batch = {"jobs": [mine, {**mine, "depends_on": ["$0", ours]}]}
    made = await client.post("/v1/jobs/batch", json=batch, headers=bearer(tenant))
    assert made.status_code == 201, made.text


async def test_a_duplicate_the_key_may_read_is_answered_whole(client: ApiClient) -> None:
    holder = await client.post("/v1/jobs", json={**JOB, "unique_key": "u"})

    again = await client.post("/v1/jobs", json={**JOB, "unique_key": "u"})

    assert (again.status_code, again.headers["x-job-duplicate"]) == (200, "true")
    assert again.json() == holder.json()


# -- batches ------------------------------------------------------------------------------------


async def test_a_batch_reports_each_items_outcome_and_a_replayed_batch_is_200(
    client: ApiClient, db: asyncpg.Connection
) -> None:
    held = (await client.post("/v1/jobs", json={**JOB, "unique_key": "held"})).json()["id"]
    batch = {
        "jobs": [
            JOB,
            {**JOB, "unique_key": "held"},
            {**JOB, "idempotency_key": "item-1"},
            {**JOB, "unique_key": "new", "idempotency_key": "item-2"},
        ]
    }

    first = await client.post("/v1/jobs/batch", json=batch)
    assert first.status_code == 201, first.text
    assert first.json()["outcomes"] == ["created", "duplicate", "created", "created"]
    assert first.json()["ids"][1] == held
    assert await _count(db) == 4

    again = await client.post("/v1/jobs/batch", json={"jobs": batch["jobs"][1:]})
    assert again.status_code == 200, again.text
    assert again.json() == {
        "ids": first.json()["ids"][1:],
        "outcomes": ["duplicate", "replayed", "replayed"],
    }
    assert await _count(db) == 4


async def test_a_batch_reusing_an_idempotency_key_for_another_job_is_422_and_stores_nothing(
    client: ApiClient, db: asyncpg.Connection
) -> None:
    await client.post("/v1/jobs/batch", json={"jobs": [{**JOB, "idempotency_key": "i"}]})

    response = await client.post(
        "/v1/jobs/batch",
        json={"jobs": [JOB, {**JOB, "payload": {"n": 9}, "idempotency_key": "i"}]},
    )

    assert response.status_code == 422, response.text
    assert "different request" in error_body(response)["detail"]
    assert await _count(db) == 1


async def test_a_batch_without_keys_still_answers_its_ids_and_outcomes(
    client: ApiClient,
) -> None:
    response = await client.post("/v1/jobs/batch", json={"jobs": [JOB, JOB]})

    assert response.status_code == 201
    assert response.json()["outcomes"] == ["created", "created"]
    assert len(set(response.json()["ids"])) == 2
