"""Rate limits per API key, in-process: requests and jobs a second with a burst, 429 with
Retry-After past them, a batch larger than the burst refused for good (400), limits managed over
/v1/keys and never looser than the managing key's own, counted per key name in /metrics, and
let through uncounted while the database is down. tests/e2e/test_e2e_api_keys.py checks the
limit across two real API processes; tests/core/test_key_rate_buckets.py the shared bucket."""

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import pytest

from api.support import ApiClient, ClientFactory, Outage, bearer, error_body
from queue_core.db import create_pool
from queue_core.keys import ALL_SCOPES, KeyStore, RateLimit, RateLimits, Scope


async def _key(url: str, limits: RateLimits, scopes: Any = ALL_SCOPES) -> tuple[str, str]:
    """A new key with ``limits``: (name, secret)."""
    name = f"limited-{uuid.uuid4().hex[:8]}"
    pool = await create_pool(url, max_size=1)
    try:
        new = await KeyStore(pool).create(name=name, scopes=scopes, limits=limits)
    finally:
        await pool.close()
    return name, new.secret


def _job() -> dict[str, Any]:
    return {"type": "noop", "payload": {"n": 1}}


async def _jobs(db: asyncpg.Connection) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM jobs")
    return count


async def test_a_key_past_its_requests_burst_gets_429_with_retry_after_then_gets_through(
    client: ApiClient, db_url: str
) -> None:
    # One a second: the four requests need only come within a second of each other.
    name, key = await _key(db_url, RateLimits(requests=RateLimit(per_s=1.0, burst=3)))
    status = f"/jobs/status?id={uuid.uuid4()}"

    first = [await client.get(status, headers=bearer(key)) for _ in range(3)]
    refused = await client.get(status, headers=bearer(key))

    assert [r.status_code for r in first] == [404, 404, 404]  # let in: no such job
    assert refused.status_code == 429, refused.text
    retry_after = int(refused.headers["retry-after"])
    assert retry_after == 1  # a token refills every second
    detail = error_body(refused)["detail"]
    assert "requests limit is 1/s (burst 3)" in detail
    await asyncio.sleep(retry_after)  # as a client told to wait would
    assert (await client.get(status, headers=bearer(key))).status_code == 404

    page = (await client.get("/metrics")).text  # the admin key: not limited
    assert f'queue_api_rate_limited_total{{key="{name}",limit="requests"}} 1.0' in page
    assert f'queue_api_key_requests_total{{key="{name}"}} 4.0' in page


async def test_jobs_count_one_by_one_a_batch_beyond_the_burst_is_refused_for_good(
    client: ApiClient, db_url: str, db: asyncpg.Connection
) -> None:
    name, key = await _key(db_url, RateLimits(jobs=RateLimit(per_s=0.5, burst=5)))

    too_big = await client.post("/v1/jobs/batch", json={"jobs": [_job()] * 6}, headers=bearer(key))
    assert too_big.status_code == 400, too_big.text
    assert "at most 5 jobs at once" in error_body(too_big)["detail"]
    assert "retry-after" not in too_big.headers

    started = time.monotonic()
    batch = await client.post("/v1/jobs/batch", json={"jobs": [_job()] * 4}, headers=bearer(key))
    single = await client.post("/jobs", json=_job(), headers=bearer(key))
    over = await client.post("/jobs", json=_job(), headers=bearer(key))
    elapsed = time.monotonic() - started

    assert (batch.status_code, single.status_code) == (201, 201)
    assert over.status_code == 429, over.text
    # One job every 2 s, rounded up: 2, unless the requests took over a second.
    retry_after = int(over.headers["retry-after"])
    assert retry_after == 2 or (elapsed >= 1.0 and retry_after == 1), (retry_after, elapsed)
    assert await _jobs(db) == 5  # nothing of the refused requests was stored
    page = (await client.get("/metrics")).text
    assert f'queue_api_key_jobs_total{{key="{name}"}} 5.0' in page
    assert f'queue_api_rate_limited_total{{key="{name}",limit="jobs"}} 1.0' in page


async def test_keys_get_and_change_limits_over_http_never_looser_than_the_callers(
    make_client: ClientFactory, db_url: str
) -> None:
    async with make_client(db_url, auth_cache_s=0.2) as admin:
        made = await admin.post(
            "/v1/keys",
            json={
                "name": "bounded",
                "scopes": ["keys:admin", "jobs:read"],
                "requests_per_s": 100,
                "jobs_per_s": 10,
                "jobs_burst": 50,
            },
        )
        assert made.status_code == 201, made.text
        view = made.json()
        assert (view["requests_per_s"], view["requests_burst"]) == (100, 100)  # 1 s worth
        assert (view["jobs_per_s"], view["jobs_burst"]) == (10, 50)
        bounded = bearer(view["key"])

        looser = await admin.post(
            "/v1/keys",
            json={"name": "looser", "scopes": ["jobs:read"], "requests_per_s": 200},
            headers=bounded,
        )
        unlimited = await admin.post(
            "/v1/keys", json={"name": "free", "scopes": ["jobs:read"]}, headers=bounded
        )
        tighter = await admin.post(
            "/v1/keys",
            json={"name": "tight", "scopes": ["jobs:read"], "requests_per_s": 5, "jobs_per_s": 1},
            headers=bounded,
        )
        assert looser.status_code == unlimited.status_code == 403
        assert "looser than its own" in error_body(looser)["detail"]
        assert tighter.status_code == 201, tighter.text

        changed = await admin.put("/v1/keys/tight/limits", json={"jobs_per_s": 2})
        assert changed.status_code == 200, changed.text
        assert (changed.json()["requests_per_s"], changed.json()["jobs_per_s"]) == (None, 2)
        listed = {k["name"]: k for k in (await admin.get("/v1/keys")).json()["keys"]}
        assert listed["tight"]["jobs_burst"] == 2
        assert (await admin.put("/v1/keys/nobody/limits", json={})).status_code == 404


@pytest.mark.parametrize(
    "limits",
    [
        {"requests_burst": 5},  # a burst without a rate
        {"requests_per_s": 0},
        {"jobs_per_s": -1},
        {"jobs_per_s": 1e7},
        {"requests_per_s": 1e-13},  # below one a day: its bucket's instant would overflow
        {"jobs_per_s": 1e-320},
        {"jobs_per_s": 1, "jobs_burst": 0},
        {"requests_per_s": "fast"},
        {"requests_per_minute": 5},
    ],
)
async def test_bad_limits_are_refused_with_400_naming_the_problem(
    shared_client: ApiClient, limits: dict[str, Any]
) -> None:
    response = await shared_client.put("/v1/keys/anyone/limits", json=limits)

    assert response.status_code == 400, response.text
    error_body(response)


async def test_while_the_database_is_down_a_limited_key_is_let_through_uncounted(
    outage: Outage, db_url: str
) -> None:
    _, key = await _key(
        db_url, RateLimits(requests=RateLimit(per_s=1, burst=1)), scopes=[Scope.METRICS_READ]
    )
    await outage.client.get("/metrics", headers=bearer(key))  # the key is checked and cached
    outage.proxy.down()

    answers = [await outage.client.get("/metrics", headers=bearer(key)) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 200]
    assert "queue_api_rate_limit_unchecked_total" in answers[-1].text
