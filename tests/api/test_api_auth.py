"""API keys on every endpoint: each protected endpoint x {no key, malformed, unknown, revoked,
expired, wrong scope, queue not allowed} gets the right status, the open ones stay open, and no
secret reaches a log line or the database in clear. In-process; tests/e2e/test_e2e_api_keys.py
does the same black-box with keys made by the real ``queue-keys``."""

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from litestar.exceptions import NotAuthorizedException
from structlog.typing import EventDict

from api.support import LOCAL_BASE_URL, ApiClient, ClientFactory, bearer, build_app, error_body
from helpers import eventually
from pg_provider import run_sync
from queue_api.auth import PUBLIC_OPT, SCOPES_OPT, SESSION_OPT, KeyChecker
from queue_core.db import create_pool
from queue_core.jobs import NewJob
from queue_core.keys import (
    ALL_SCOPES,
    NO_LIMITS,
    KeyStore,
    RateLimit,
    RateLimits,
    Scope,
    StoredKey,
    generate_key,
)
from queue_core.queue import Queue
from queue_core.schedules import Schedule, Schedules

ALLOWED = "allowed"
OTHER = "other"


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str  # {job} is replaced by a job's id, {queue} by the queue the call is for
    scope: Scope
    ok: int  # the status a key with the scope and the queue gets
    body: dict[str, Any] | None = None
    queued: bool = True  # acts on a queue: a key restricted to other queues gets 403


def _job(queue: str) -> dict[str, Any]:
    return {"type": "noop", "payload": {"n": 1}, "queue": queue}


ENDPOINTS = [
    Endpoint("enqueue", "POST", "/jobs", Scope.JOBS_WRITE, 201, _job(ALLOWED)),
    Endpoint("enqueue-v1", "POST", "/v1/jobs", Scope.JOBS_WRITE, 201, _job(ALLOWED)),
    Endpoint(
        "enqueue-batch", "POST", "/v1/jobs/batch", Scope.JOBS_WRITE, 201, {"jobs": [_job(ALLOWED)]}
    ),
    Endpoint("status", "GET", "/jobs/status?id={job}", Scope.JOBS_READ, 200),
    Endpoint("cancel", "POST", "/v1/jobs/{job}/cancel", Scope.JOBS_ADMIN, 200),
    Endpoint("retry", "POST", "/v1/jobs/{job}/retry", Scope.JOBS_ADMIN, 200),
    Endpoint("list-jobs", "GET", "/v1/jobs?queue={queue}", Scope.JOBS_READ, 200),
    Endpoint("get-job", "GET", "/v1/jobs/{job}", Scope.JOBS_READ, 200),
    Endpoint("delete-job", "DELETE", "/v1/jobs/{job}", Scope.JOBS_ADMIN, 204),
    # Bulk actions: a restricted key acts on its queues only (tests/api/test_api_job_admin.py).
    Endpoint(
        "cancel-jobs", "POST", "/v1/jobs/cancel", Scope.JOBS_ADMIN, 200, {"limit": 1}, queued=False
    ),
    Endpoint(
        "retry-jobs", "POST", "/v1/jobs/retry", Scope.JOBS_ADMIN, 200, {"limit": 1}, queued=False
    ),
    Endpoint("metrics", "GET", "/metrics", Scope.METRICS_READ, 200, queued=False),
    # Listings: a key restricted to queues sees those only (tests/api/test_api_fleet.py).
    Endpoint("list-queues", "GET", "/v1/queues", Scope.JOBS_READ, 200, queued=False),
    Endpoint("list-workers", "GET", "/v1/workers", Scope.JOBS_READ, 200, queued=False),
    Endpoint("pause-queue", "POST", "/v1/queues/{queue}/pause", Scope.QUEUES_ADMIN, 200),
    Endpoint("resume-queue", "POST", "/v1/queues/{queue}/resume", Scope.QUEUES_ADMIN, 200),
    # Schedules: one named after each queue, on that queue (_make_keys registers them).
    Endpoint("list-schedules", "GET", "/v1/schedules", Scope.JOBS_READ, 200, queued=False),
    Endpoint("pause-schedule", "POST", "/v1/schedules/{queue}/pause", Scope.QUEUES_ADMIN, 200),
    Endpoint("resume-schedule", "POST", "/v1/schedules/{queue}/resume", Scope.QUEUES_ADMIN, 200),
    Endpoint("list-keys", "GET", "/v1/keys", Scope.KEYS_ADMIN, 200, queued=False),
    Endpoint(
        "create-key",
        "POST",
        "/v1/keys",
        Scope.KEYS_ADMIN,
        201,
        {},  # call() makes it
    ),
    Endpoint("revoke-key", "POST", "/v1/keys/{victim}/revoke", Scope.KEYS_ADMIN, 200, queued=False),
    Endpoint(
        "set-limits", "PUT", "/v1/keys/{victim}/limits", Scope.KEYS_ADMIN, 200, {}, queued=False
    ),
]
BY_NAME = {e.name: e for e in ENDPOINTS}
QUEUED = [e for e in ENDPOINTS if e.queued]


@dataclass(frozen=True)
class Keys:
    """The module's keys, by what they are for."""

    revoked: str
    expired: str
    unscoped: str  # queues:admin only: every endpoint but pausing and resuming needs more
    by_scope: dict[Scope, str]  # one scope each, queue ALLOWED only


async def _make_keys(url: str) -> Keys:
    pool = await create_pool(url, max_size=2)
    store = KeyStore(pool)
    try:
        tag = uuid.uuid4().hex[:6]
        revoked = await store.create(name=f"revoked-{tag}", scopes=ALL_SCOPES)
        await store.revoke(revoked.info.name)
        past = datetime.now(UTC) - timedelta(seconds=1)
        expired = await store.create(name=f"expired-{tag}", scopes=ALL_SCOPES, expires_at=past)
        unscoped = await store.create(name=f"unscoped-{tag}", scopes=[Scope.QUEUES_ADMIN])
        await Schedules(pool).register(
            [Schedule(name=q, queue=q, cron="0 0 1 1 *") for q in (ALLOWED, OTHER)]
        )
        by_scope = {
            scope: (
                await store.create(
                    name=f"{scope.replace(':', '-')}-{tag}",
                    scopes=[scope],
                    # /metrics covers every queue: a key limited to some may not read it.
                    queues=None if scope is Scope.METRICS_READ else [ALLOWED],
                )
            ).secret
            for scope in ALL_SCOPES
        }
    finally:
        await pool.close()
    return Keys(revoked.secret, expired.secret, unscoped.secret, by_scope)


@pytest.fixture(name="keys", scope="module")
def fx_keys(shared_db_url: str) -> Keys:
    return run_sync(_make_keys(shared_db_url))


@pytest.fixture(name="anonymous")
async def fx_anonymous(make_client: ClientFactory, shared_db_url: str) -> AsyncIterator[ApiClient]:
    """A client that sends no key of its own: each request says which."""
    async with make_client(shared_db_url, key=None) as client:
        yield client


async def _enqueue(db_url: str, queue: str) -> uuid.UUID:
    pool = await create_pool(db_url, max_size=1)
    try:
        (job_id,) = await Queue(pool).enqueue_many(
            [NewJob(type="noop", payload={"n": 1}, queue=queue)]
        )
    finally:
        await pool.close()
    return job_id


async def call(
    client: ApiClient,
    endpoint: Endpoint,
    key: str | None,
    *,
    queue: str = ALLOWED,
    job: uuid.UUID | None = None,
    victim: str = "nobody",
) -> httpx.Response:
    path = endpoint.path.format(job=job or uuid.uuid4(), victim=victim, queue=queue)
    body = endpoint.body
    if body is not None and endpoint.name.startswith("enqueue"):
        body = {"jobs": [_job(queue)]} if "jobs" in body else _job(queue)
    if endpoint.name == "create-key":
        body = {
            "name": f"made-{uuid.uuid4().hex[:8]}",
            "scopes": ["keys:admin"],  # no more than the key making it holds
            **({"queues": [ALLOWED]} if queue == ALLOWED else {}),
        }
    headers = {} if key is None else bearer(key)
    return await client.request(endpoint.method, path, json=body, headers=headers)


def _challenge(response: httpx.Response) -> str:
    return str(response.headers.get("www-authenticate", ""))


# -- 401: no usable key ---------------------------------------------------------------------

UNUSABLE = ["none", "not-bearer", "malformed", "unknown", "wrong-secret", "revoked", "expired"]


def _unusable(kind: str, keys: Keys) -> tuple[str | None, dict[str, str]]:
    """(key, extra headers) for ``kind``."""
    known = keys.by_scope[Scope.JOBS_READ]
    key: dict[str, str | None] = {
        "none": None,
        "not-bearer": None,
        "malformed": "tq_short",
        "unknown": generate_key()[1],
        "wrong-secret": known[:12] + generate_key()[1][12:],  # a real prefix, another secret
        "revoked": keys.revoked,
        "expired": keys.expired,
    }
    headers = {"Authorization": f"Basic {known}"} if kind == "not-bearer" else {}
    return key[kind], headers


@pytest.mark.parametrize("kind", UNUSABLE)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
async def test_every_protected_endpoint_answers_401_with_a_challenge_without_a_usable_key(
    anonymous: ApiClient, keys: Keys, endpoint: Endpoint, kind: str
) -> None:
    key, headers = _unusable(kind, keys)
    if headers:
        path = endpoint.path.format(job=uuid.uuid4(), victim="nobody", queue=ALLOWED)
        response = await anonymous.request(
            endpoint.method, path, json=endpoint.body, headers=headers
        )
    else:
        response = await call(anonymous, endpoint, key)

    assert response.status_code == 401, response.text
    error_body(response)
    challenge = _challenge(response)
    assert challenge.startswith('Bearer realm="task-queue"'), challenge
    assert ('error="invalid_token"' in challenge) == (key is not None), challenge
    if kind in ("revoked", "expired"):
        assert kind in response.json()["detail"]


# -- 403: the wrong scope, or a queue the key may not use ----------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
async def test_every_protected_endpoint_answers_403_naming_the_scope_a_key_lacks(
    anonymous: ApiClient, keys: Keys, endpoint: Endpoint
) -> None:
    # queues:admin is all the unscoped key has: a key with another scope stands in for it.
    lacking = keys.by_scope[Scope.JOBS_READ] if endpoint.scope is Scope.QUEUES_ADMIN else None
    response = await call(anonymous, endpoint, lacking or keys.unscoped)

    assert response.status_code == 403, response.text
    assert error_body(response)["detail"] == f"this API key lacks the scope {endpoint.scope}"
    assert 'error="insufficient_scope"' in _challenge(response)


@pytest.mark.parametrize("endpoint", [*QUEUED, BY_NAME["create-key"]], ids=lambda e: e.name)
async def test_a_key_gets_403_for_a_queue_it_may_not_use(
    anonymous: ApiClient, keys: Keys, shared_db_url: str, endpoint: Endpoint
) -> None:
    job = await _enqueue(shared_db_url, OTHER)

    response = await call(anonymous, endpoint, keys.by_scope[endpoint.scope], queue=OTHER, job=job)

    assert response.status_code == 403, response.text
    detail = error_body(response)["detail"]
    assert detail.startswith("this API key ")
    if endpoint.path.count("{job}"):
        assert OTHER not in detail  # a job's queue is not named to a key that may not use it


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
async def test_a_key_with_the_scope_and_the_queue_gets_through(
    anonymous: ApiClient, keys: Keys, shared_db_url: str, endpoint: Endpoint
) -> None:
    key = keys.by_scope[endpoint.scope]
    job = await _enqueue(shared_db_url, ALLOWED)
    victim = f"victim-{uuid.uuid4().hex[:8]}"  # within the key's power: its scope, its queue
    run_sync(_create(shared_db_url, victim, scopes=[Scope.KEYS_ADMIN], queues=[ALLOWED]))
    if endpoint.name in ("retry", "delete-job"):  # only a finished job: cancel it first
        await call(anonymous, BY_NAME["cancel"], keys.by_scope[Scope.JOBS_ADMIN], job=job)

    response = await call(anonymous, endpoint, key, job=job, victim=victim)

    assert response.status_code == endpoint.ok, response.text


async def _create(url: str, name: str, **fields: Any) -> str:
    pool = await create_pool(url, max_size=1)
    try:
        return (
            await KeyStore(pool).create(
                name=name, scopes=fields.pop("scopes", ALL_SCOPES), **fields
            )
        ).secret
    finally:
        await pool.close()


# -- what stays open, and nothing open by mistake -------------------------------------------


@pytest.mark.parametrize("path", ["/health", "/ready", "/schema/openapi.json", "/schema/swagger"])
async def test_probes_and_the_openapi_pages_need_no_key(anonymous: ApiClient, path: str) -> None:
    assert (await anonymous.get(path)).status_code == 200


def test_every_route_is_public_or_names_its_scopes_and_the_document_agrees(
    shared_db_url: str,
) -> None:
    app = build_app(shared_db_url)
    document = app.openapi_schema.to_schema()
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            if handler.http_methods == {"OPTIONS"} or handler.opt.get(PUBLIC_OPT):
                continue
            if handler.opt.get(SESSION_OPT):  # the web console: a session, maybe no scope
                assert SCOPES_OPT in handler.opt, f"{route.path} declares no scope"
                assert not handler.include_in_schema, route.path
                continue
            scopes = handler.opt.get(SCOPES_OPT)
            assert scopes, f"{route.path} {handler.http_methods} declares no scope"
            if handler.include_in_schema:
                (method,) = handler.http_methods
                path = route.path_format
                operation = document["paths"][path][method.lower()]
                assert operation["security"] == [{"BearerKey": sorted(scopes)}], path
                assert {"401", "403", "429"} <= set(operation["responses"]), path
    scheme = document["components"]["securitySchemes"]["BearerKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")


async def test_a_metrics_key_limited_to_some_queues_may_not_read_the_fleets_metrics(
    client: ApiClient, db_url: str
) -> None:
    # Every queue's depth and every key's request counts: nothing there is one tenant's alone.
    limited = await _create(db_url, "tenant-metrics", scopes=[Scope.METRICS_READ], queues=["a"])

    response = await client.get("/metrics", headers=bearer(limited))

    assert response.status_code == 403, response.text
    assert "limited to some" in error_body(response)["detail"]
    assert "queue_" not in response.text


# -- keys over HTTP ----------------------------------------------------------------------------


async def test_a_key_made_over_http_is_shown_once_works_and_stops_working_once_revoked(
    make_client: ClientFactory, db_url: str, db: asyncpg.Connection
) -> None:
    async with make_client(db_url, auth_cache_s=0.2) as admin:
        made = await admin.post(
            "/v1/keys", json={"name": "reader", "scopes": ["jobs:read"], "expires_in_days": 7}
        )
        assert made.status_code == 201, made.text
        key = made.json()["key"]
        assert made.json()["prefix"] == key[:11]
        listed = await admin.get("/v1/keys")
        assert key not in listed.text
        assert all("key" not in k and "key_hash" not in k for k in listed.json()["keys"])
        assert {k["name"] for k in listed.json()["keys"]} == {"test-admin", "reader"}

        status = f"/jobs/status?id={uuid.uuid4()}"
        assert (await admin.get(status, headers=bearer(key))).status_code == 404
        assert (await admin.post("/v1/keys/reader/revoke")).status_code == 200

        async def refused() -> bool:
            return (await admin.get(status, headers=bearer(key))).status_code == 401

        await eventually(refused, timeout_s=5)
    expires = await db.fetchval("SELECT expires_at FROM api_keys WHERE name = 'reader'")
    assert timedelta(days=6) < expires - datetime.now(UTC) <= timedelta(days=7)


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"name": "test-admin", "scopes": ["jobs:read"]}, 409, "already exists"),
        ({"name": "x", "scopes": ["jobs:everything"]}, 400, "scopes"),
        ({"name": "tq_abcdefgh", "scopes": ["jobs:read"]}, 400, "tq_"),
        ({"name": "x", "scopes": []}, 400, "scopes"),
    ],
)
async def test_a_key_that_cannot_be_made_gets_a_clear_error(
    client: ApiClient, body: dict[str, Any], status: int, says: str
) -> None:
    response = await client.post("/v1/keys", json=body)

    assert response.status_code == status, response.text
    assert says in str(response.json())


async def test_a_key_cannot_grant_a_scope_it_lacks(client: ApiClient, db_url: str) -> None:
    limited = await _create(db_url, "keymaster", scopes=[Scope.KEYS_ADMIN])

    response = await client.post(
        "/v1/keys",
        json={"name": "escalated", "scopes": ["jobs:admin"]},
        headers=bearer(limited),
    )

    assert response.status_code == 403
    assert "jobs:admin" in response.json()["detail"]


async def test_a_key_restricted_to_some_queues_manages_only_keys_within_its_own_power(
    client: ApiClient, db_url: str, db: asyncpg.Connection
) -> None:
    # A tenant's keys:admin key, restricted to queue a, beside another tenant's key and the
    # unrestricted admin: it must see, revoke and change only keys it could have made itself.
    tenant_a = await _create(db_url, "tenant-a-admin", scopes=list(ALL_SCOPES), queues=["a"])
    await _create(db_url, "tenant-a-writer", scopes=[Scope.JOBS_WRITE], queues=["a"])
    await _create(db_url, "tenant-b-writer", scopes=[Scope.JOBS_WRITE], queues=["b"])
    await _create(db_url, "wide-reader", scopes=[Scope.JOBS_READ])  # every queue
    as_a = bearer(tenant_a)

    listed = await client.get("/v1/keys", headers=as_a)
    assert listed.status_code == 200, listed.text
    assert {k["name"] for k in listed.json()["keys"]} == {"tenant-a-admin", "tenant-a-writer"}

    for victim in ("tenant-b-writer", "wide-reader", "test-admin"):
        for method, path, body in (
            ("POST", f"/v1/keys/{victim}/revoke", None),
            ("PUT", f"/v1/keys/{victim}/limits", {"requests_per_s": 1, "requests_burst": 1}),
        ):
            response = await client.request(method, path, json=body, headers=as_a)
            # As for no key at all: it must not learn that the key exists, nor its powers.
            assert response.status_code == 404, (method, path, response.text)
            assert response.json() == (
                await client.request(method, path.replace(victim, "nobody"), json=body)
            ).json() | {"detail": response.json()["detail"]}
            assert victim in response.json()["detail"]
            assert "queue" not in response.text
    untouched = await db.fetch(
        "SELECT name FROM api_keys WHERE revoked_at IS NULL AND requests_per_s IS NULL"
    )
    assert {r["name"] for r in untouched} >= {"tenant-b-writer", "wide-reader", "test-admin"}

    # Its own tenant's keys it manages as before.
    assert (await client.post("/v1/keys/tenant-a-writer/revoke", headers=as_a)).status_code == 200


@pytest.mark.parametrize(
    "target",
    [
        {"scopes": list(ALL_SCOPES)},
        {"scopes": [Scope.JOBS_READ], "limits": NO_LIMITS},
        {"scopes": [Scope.JOBS_READ], "expires_in": None},
    ],
    ids=["scopes", "limits", "expiry"],
)
async def test_a_key_cannot_revoke_or_throttle_a_key_with_more_power_of_any_kind(
    client: ApiClient, db_url: str, db: asyncpg.Connection, target: dict[str, Any]
) -> None:
    soon = datetime.now(UTC) + timedelta(hours=1)
    limits = RateLimits(requests=RateLimit(per_s=10, burst=10))
    caller = await _create(
        db_url,
        "keymaster",
        scopes=[s for s in ALL_SCOPES if s is not Scope.JOBS_ADMIN],
        limits=limits,
        expires_at=soon,
    )
    await _create(
        db_url,
        "stronger",
        scopes=target["scopes"],
        limits=target.get("limits", limits),
        expires_at=None if "expires_in" in target else soon,
    )

    for method, path, body in (
        ("POST", "/v1/keys/stronger/revoke", None),
        ("PUT", "/v1/keys/stronger/limits", {"requests_per_s": 1, "requests_burst": 1}),
    ):
        response = await client.request(method, path, json=body, headers=bearer(caller))
        assert response.status_code == 404, response.text
        assert response.json()["detail"] == "no key is named 'stronger' or has that prefix"
    listed = await client.get("/v1/keys", headers=bearer(caller))
    assert {k["name"] for k in listed.json()["keys"]} == {"keymaster"}
    row = await db.fetchrow(
        "SELECT revoked_at, requests_per_s FROM api_keys WHERE name = 'stronger'"
    )
    assert row is not None
    assert row["revoked_at"] is None
    assert row["requests_per_s"] == (None if "limits" in target else 10)


async def test_a_key_that_expires_cannot_make_one_that_outlives_it(
    client: ApiClient, db_url: str, db: asyncpg.Connection
) -> None:
    caller = bearer(
        await _create(
            db_url,
            "short-lived",
            scopes=[Scope.KEYS_ADMIN, Scope.JOBS_READ],
            expires_at=datetime.now(UTC) + timedelta(days=2),
        )
    )

    for expiry in ({}, {"expires_in_days": 3}):
        body = {"name": "heir", "scopes": ["jobs:read"], **expiry}
        response = await client.post("/v1/keys", json=body, headers=caller)
        assert response.status_code == 403, response.text
        assert "cannot grant an expiry later than its own" in response.json()["detail"]
    assert await db.fetchval("SELECT count(*) FROM api_keys WHERE name = 'heir'") == 0

    body = {"name": "heir", "scopes": ["jobs:read"], "expires_in_days": 1}
    assert (await client.post("/v1/keys", json=body, headers=caller)).status_code == 201


async def test_revoking_an_unknown_key_is_404(client: ApiClient) -> None:
    assert (await client.post("/v1/keys/nobody/revoke")).status_code == 404
    # No key can be named so; and PostgreSQL refuses even to compare a NUL (was a 500).
    assert (await client.post("/v1/keys/a%00b/revoke")).status_code == 404
    assert (await client.put("/v1/keys/a%00b/limits", json={})).status_code == 404


_JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/v1/keys"), ("PUT", "/v1/keys/test-admin/limits")]
)
@pytest.mark.parametrize(
    ("raw", "headers", "status"),
    [
        (b'{"name": "k1", "scopes": ["jobs:read"], "queues": ["a\\u0000"]}', _JSON, 400),
        (b'{"name": "k1", "scopes": ["jobs:read"], "queues": ["\xff"]}', _JSON, 400),
        (b"[" * 5000, _JSON, 400),
        (b"", _JSON, 400),
        (b'{"name": "k1", "scopes": ["jobs:read"]}', {"content-type": "text/plain"}, 415),
    ],
    ids=["nul", "invalid-utf8", "too-deep", "empty", "not-json"],
)
async def test_a_key_body_that_is_no_good_json_gets_a_4xx_saying_why(
    client: ApiClient, *, method: str, path: str, raw: bytes, headers: dict[str, str], status: int
) -> None:
    """The key endpoints read their bodies as the job endpoints do (each of these was a 500,
    or a 201 for text/plain)."""
    response = await client.request(method, path, content=raw, headers=headers)

    assert response.status_code == status, response.text
    assert response.json()["detail"]


# -- API_AUTH=off ------------------------------------------------------------------------------


async def test_with_auth_off_anyone_may_call_and_the_api_says_so(
    make_client: ClientFactory, db_url: str, logs: list[EventDict]
) -> None:
    async with make_client(db_url, key=None, auth="off", base_url=LOCAL_BASE_URL) as client:
        created = await client.post("/jobs", json=_job(OTHER))
        metrics = await client.get("/metrics")

    assert created.status_code == 201
    assert "queue_api_auth_enabled 0.0" in metrics.text
    assert next(e for e in logs if e["event"] == "api_auth_disabled")["log_level"] == "warning"


async def test_auth_is_on_by_default_and_the_gauge_says_so(client: ApiClient) -> None:
    assert "queue_api_auth_enabled 1.0" in (await client.get("/metrics")).text


# -- secrets stay secret ---------------------------------------------------------------------


async def test_no_key_appears_in_a_log_line_or_in_the_database_in_clear(
    make_client: ClientFactory, db_url: str, db: asyncpg.Connection, logs: list[EventDict]
) -> None:
    async with make_client(db_url) as admin:
        made = (await admin.post("/v1/keys", json={"name": "w", "scopes": ["jobs:write"]})).json()
        key = made["key"]
        await admin.post("/jobs", json=_job(ALLOWED), headers=bearer(key))
        await admin.get("/metrics", headers=bearer(key))  # 403
        await admin.get("/metrics", headers=bearer(key[:-1] + "A"))  # 401
        await admin.post("/v1/keys/w/revoke")
    secret = key.split("_", 2)[2]

    assert logs, "the app logged nothing: the check below would be vacuous"
    assert not [e for e in logs if secret in str(e)]
    row = await db.fetchrow("SELECT * FROM api_keys WHERE name = 'w'")
    assert row is not None
    assert row["key_hash"] == hashlib.sha256(key.encode()).digest()
    dump = await db.fetchval("SELECT string_agg(t::text, '|') FROM api_keys AS t")
    assert secret not in dump
    assert secret not in str(await db.fetch("SELECT * FROM pg_stat_activity"))


async def test_last_used_is_written_behind_and_at_shutdown(
    make_client: ClientFactory, db_url: str, db: asyncpg.Connection
) -> None:
    reader = await _create(db_url, "reader", scopes=[Scope.JOBS_READ])
    before = await db.fetchval("SELECT last_used_at FROM api_keys WHERE name = 'reader'")

    async with make_client(db_url, key=reader) as client:
        await client.get(f"/jobs/status?id={uuid.uuid4()}")
    used = await db.fetchval("SELECT last_used_at FROM api_keys WHERE name = 'reader'")

    assert before is None
    assert used is not None


class _CountingStore(KeyStore):
    """The real store, counting the lookups that reach the database."""

    finds = 0

    async def find(self, prefix: str) -> StoredKey | None:
        self.finds += 1
        return await super().find(prefix)


async def test_requests_arriving_while_a_key_is_looked_up_share_that_lookup(db_url: str) -> None:
    secret = await _create(db_url, "busy", scopes=[Scope.JOBS_READ])
    pool = await create_pool(db_url, max_size=4)
    try:
        store = _CountingStore(pool)
        checker = KeyChecker(cache_s=0)  # every request checks: nothing served from a cache
        checker.attach(store)
        callers = await asyncio.gather(*(checker.caller(f"Bearer {secret}") for _ in range(50)))
        assert {c.key.name for c in callers if c.key} == {"busy"}
        assert len(callers) == 50
        assert store.finds == 1  # not one per request

        # Once it has ended, the next request looks again: a revocation is seen at once.
        await KeyStore(pool).revoke("busy")
        with pytest.raises(NotAuthorizedException, match="revoked"):
            await checker.caller(f"Bearer {secret}")
    finally:
        await pool.close()
