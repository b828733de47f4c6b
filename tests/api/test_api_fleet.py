"""GET /v1/queues, POST /v1/queues/{name}/pause and /resume, GET /v1/workers, and
API_REJECT_UNKNOWN_TYPES, in-process against a real database. Workers are played by rows that
queue_core.fleet writes as a worker does (tests/e2e/test_e2e_fleet.py uses real ones)."""

import uuid
from typing import Any

import asyncpg
import pytest
from structlog.typing import EventDict

from api.support import ApiClient, ClientFactory, bearer, error_body
from queue_core.db import create_pool
from queue_core.fleet import WORKER_GONE_AFTER_S, Fleet, WorkerInfo
from queue_core.jobs import NewJob
from queue_core.keys import KeyStore, Scope
from queue_core.queue import Queue


def _worker(name: str, queues: tuple[str, ...], types: tuple[str, ...] = ("noop",)) -> WorkerInfo:
    return WorkerInfo(
        id=f"host-{name}:{100}:{name}",
        host=f"host-{name}",
        pid=100,
        queues=queues,
        task_types=types,
        concurrency=4,
    )


async def _register(db_url: str, *workers: WorkerInfo) -> None:
    pool = await create_pool(db_url, max_size=1)
    try:
        for worker in workers:
            await Fleet(pool).beat(worker)
    finally:
        await pool.close()


async def _key(db_url: str, scopes: list[Scope], queues: list[str] | None = None) -> str:
    pool = await create_pool(db_url, max_size=1)
    try:
        name = f"k-{uuid.uuid4().hex[:8]}"
        return (await KeyStore(pool).create(name=name, scopes=scopes, queues=queues)).secret
    finally:
        await pool.close()


# -- workers ----------------------------------------------------------------------------------


async def test_workers_lists_the_live_ones_only(
    client: ApiClient, db_url: str, db: asyncpg.Connection
) -> None:
    await _register(db_url, _worker("a", ("default",)), _worker("b", ("mail", "default")))
    await _register(db_url, _worker("dead", ("default",)))
    await db.execute(
        "UPDATE workers SET last_seen_at = now() - make_interval(secs => $1) WHERE id LIKE '%dead'",
        WORKER_GONE_AFTER_S + 1,
    )

    response = await client.get("/v1/workers")

    assert response.status_code == 200, response.text
    workers = response.json()["workers"]
    assert [w["host"] for w in workers] == ["host-a", "host-b"]
    assert set(workers[1]) == {
        "id",
        "host",
        "pid",
        "queues",
        "task_types",
        "concurrency",
        "started_at",
        "last_seen_at",
    }
    assert workers[1]["queues"] == ["mail", "default"]


async def test_a_beat_prunes_workers_gone_silent(db_url: str, db: asyncpg.Connection) -> None:
    await _register(db_url, _worker("dead", ("default",)))
    await db.execute(
        "UPDATE workers SET last_seen_at = now() - make_interval(secs => $1)",
        WORKER_GONE_AFTER_S + 1,
    )

    await _register(db_url, _worker("alive", ("default",)))

    assert [r["host"] for r in await db.fetch("SELECT host FROM workers")] == ["host-alive"]


async def test_a_key_restricted_to_queues_sees_only_their_workers_and_queues(
    make_client: ClientFactory, db_url: str
) -> None:
    await _register(db_url, _worker("a", ("billing", "default")), _worker("b", ("default",)))
    key = await _key(db_url, [Scope.JOBS_READ], ["billing"])

    async with make_client(db_url, key=key) as client:
        workers = (await client.get("/v1/workers")).json()["workers"]
        queues = (await client.get("/v1/queues")).json()["queues"]

    assert [(w["host"], w["queues"]) for w in workers] == [("host-a", ["billing"])]
    assert [q["name"] for q in queues] == ["billing"]


# -- queues -----------------------------------------------------------------------------------


async def test_queues_shows_depth_pause_and_workers(client: ApiClient, db_url: str) -> None:
    pool = await create_pool(db_url, max_size=2)
    try:
        queue = Queue(pool)
        await queue.enqueue_many([NewJob(type="noop", payload={"n": n}) for n in range(3)])
        await queue.enqueue(NewJob(type="noop", payload={"n": 1}, queue="mail"))
        await queue.claim(worker_id="w", queues=["mail"], limit=1, lease_s=30)
    finally:
        await pool.close()
    await _register(db_url, _worker("a", ("default", "idle")))

    paused = await client.post("/v1/queues/mail/pause")
    again = await client.post("/v1/queues/mail/pause")
    listed = (await client.get("/v1/queues")).json()["queues"]

    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"] is True
    assert again.json() == paused.json()  # pausing twice keeps the first time
    by_name = {q["name"]: q for q in listed}
    assert list(by_name) == ["default", "idle", "mail"]
    assert by_name["default"] | {"oldest_due_age_s": 0} == {
        "name": "default",
        "due": 3,
        "scheduled": 0,
        "running": 0,
        "oldest_due_age_s": 0,
        "paused": False,
        "paused_at": None,
        "workers": 1,
    }
    assert by_name["default"]["oldest_due_age_s"] >= 0
    assert (by_name["mail"]["running"], by_name["mail"]["workers"]) == (1, 0)
    assert by_name["mail"]["paused_at"] == paused.json()["paused_at"]
    assert by_name["idle"]["due"] == 0

    resumed = await client.post("/v1/queues/mail/resume")
    assert resumed.json() == {"name": "mail", "paused": False, "paused_at": None}
    assert {q["name"]: q["paused"] for q in (await client.get("/v1/queues")).json()["queues"]}[
        "mail"
    ] is False


async def test_a_pause_is_announced_to_the_workers(client: ApiClient, db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    received: list[str] = []
    try:
        await conn.add_listener("queue_pauses", lambda *args: received.append(args[3]))
        await client.post("/v1/queues/reports/pause")
        await client.post("/v1/queues/reports/resume")
        await conn.fetchval("SELECT 1")  # notifications arrive before the next reply
    finally:
        await conn.close()
    assert received == ["reports", "reports"]


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("%20%20", "must not be blank"),
        ("a%00b", "NUL"),
        ("x" * 256, "255"),
    ],
    ids=["blank", "nul", "too-long"],
)
async def test_a_queue_name_no_queue_can_have_is_400(
    client: ApiClient, name: str, says: str
) -> None:
    response = await client.post(f"/v1/queues/{name}/pause")

    assert response.status_code == 400, response.text
    assert says in str(error_body(response))


async def test_a_key_restricted_to_a_queue_may_pause_only_that_one(
    make_client: ClientFactory, db_url: str
) -> None:
    key = await _key(db_url, [Scope.QUEUES_ADMIN], ["billing"])
    async with make_client(db_url, key=key) as client:
        own = await client.post("/v1/queues/billing/pause")
        other = await client.post("/v1/queues/default/pause", headers=bearer(key))

    assert own.status_code == 200
    assert other.status_code == 403
    assert error_body(other)["detail"] == "this API key may not use the queue 'default'"


# -- API_REJECT_UNKNOWN_TYPES -----------------------------------------------------------------


async def test_reject_unknown_types_refuses_with_422_what_no_live_worker_serves(
    make_client: ClientFactory, db_url: str, db: asyncpg.Connection
) -> None:
    await _register(db_url, _worker("a", ("default",), ("noop", "sleep")))

    async with make_client(db_url, reject_unknown_types=True) as client:
        served = await client.post("/jobs", json={"type": "noop", "payload": {"a": 1}})
        wrong_type = await client.post("/jobs", json={"type": "noope", "payload": {"a": 1}})
        wrong_queue = await client.post(
            "/jobs", json={"type": "noop", "payload": {"a": 1}, "queue": "mail"}
        )
        batch = await client.post(
            "/v1/jobs/batch",
            json={
                "jobs": [{"type": "noop", "payload": {"a": 1}}] + [_unknown(n) for n in range(3)]
            },
        )

    assert served.status_code == 201, served.text
    assert wrong_type.status_code == 422
    assert error_body(wrong_type)["detail"].startswith(
        "no live worker serves job type 'noope' on queue 'default': start a worker"
    )
    assert wrong_queue.status_code == 422
    assert batch.status_code == 422
    assert "(and 2 more type and queue pairs)" in error_body(batch)["detail"]
    assert await db.fetchval("SELECT count(*) FROM jobs") == 1


def _unknown(n: int) -> dict[str, Any]:
    return {"type": f"unknown-{n}", "payload": {"a": 1}}


async def test_without_reject_an_unserved_job_is_accepted_counted_and_warned_once(
    make_client: ClientFactory, db_url: str, logs: list[EventDict]
) -> None:
    await _register(db_url, _worker("a", ("default",), ("noop",)))
    async with make_client(db_url) as client:
        before = _unserved(await client.get("/metrics"))
        for job_type in ("nobody", "noop", "fail", "nobody"):
            created = await client.post("/jobs", json={"type": job_type, "payload": {"a": 1}})
            assert created.status_code == 201
        after = _unserved(await client.get("/metrics"))

    assert after == before + 3
    warnings = [e for e in logs if e["event"] == "job_unserved"]
    assert len(warnings) == 1, warnings  # rate-limited: once a minute per process at most
    assert warnings[0]["log_level"] == "warning"
    # The client's words are not logged: a type metrics do not name is "other".
    assert (warnings[0]["type"], warnings[0]["queue"]) == ("other", "default")


async def test_without_reject_and_without_any_worker_nothing_is_counted(
    client: ApiClient, logs: list[EventDict]
) -> None:
    before = _unserved(await client.get("/metrics"))

    created = await client.post("/jobs", json={"type": "nobody", "payload": {"a": 1}})

    assert created.status_code == 201
    assert _unserved(await client.get("/metrics")) == before
    assert not [e for e in logs if e["event"] == "job_unserved"]


async def test_reject_without_any_worker_refuses_every_job(
    make_client: ClientFactory, db_url: str
) -> None:
    async with make_client(db_url, reject_unknown_types=True) as client:
        refused = await client.post("/jobs", json={"type": "noop", "payload": {"a": 1}})

    assert refused.status_code == 422


def _unserved(metrics: Any) -> float:
    for line in metrics.text.splitlines():
        if line.startswith("queue_api_jobs_unserved_total "):
            return float(line.split()[1])
    raise AssertionError("queue_api_jobs_unserved_total is not on /metrics")
