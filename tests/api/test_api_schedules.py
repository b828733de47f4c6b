"""GET /v1/schedules, POST /v1/schedules/{name}/pause and /resume, in-process against a real
database. Schedules are registered as a worker registers them (queue_core.schedules);
tests/e2e/test_e2e_schedules.py runs real workers."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api.support import ApiClient, ClientFactory, bearer, error_body, problem_text
from queue_core.db import create_pool
from queue_core.keys import KeyStore, Scope
from queue_core.schedules import Schedule, Schedules

HOURLY_PARIS = Schedule(name="report", cron="0 * * * *", tz="Europe/Paris", queue="reports")
EVERY_MINUTE = Schedule(name="ping", every_s=60, missed="skip", grace_s=5)


async def _register(db_url: str, *schedules: Schedule, tick: datetime | None = None) -> None:
    pool = await create_pool(db_url, max_size=1)
    try:
        await Schedules(pool).register(list(schedules))
        if tick is not None:
            await Schedules(pool).take_tick(schedules[0], tick, run=True)
    finally:
        await pool.close()


async def _key(db_url: str, scopes: list[Scope], queues: list[str] | None = None) -> str:
    pool = await create_pool(db_url, max_size=1)
    try:
        name = f"k-{uuid.uuid4().hex[:8]}"
        return (await KeyStore(pool).create(name=name, scopes=scopes, queues=queues)).secret
    finally:
        await pool.close()


async def _list(client: ApiClient, key: str | None = None) -> dict[str, dict[str, Any]]:
    headers = {} if key is None else bearer(key)
    response = await client.get("/v1/schedules", headers=headers)
    assert response.status_code == 200, response.text
    return {s["name"]: s for s in response.json()["schedules"]}


async def test_the_list_shows_each_schedule_with_its_next_and_last_run(
    client: ApiClient, db_url: str
) -> None:
    tick = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    await _register(db_url, HOURLY_PARIS, EVERY_MINUTE)
    await _register(db_url, HOURLY_PARIS, tick=tick)
    before = datetime.now(UTC)
    listed = await _list(client)
    after = datetime.now(UTC)

    assert sorted(listed) == ["ping", "report"]
    report = listed["report"]
    assert {k: report[k] for k in ("queue", "cron", "every_s", "tz", "missed", "paused")} == {
        "queue": "reports",
        "cron": "0 * * * *",
        "every_s": None,
        "tz": "Europe/Paris",
        "missed": "once",
        "paused": False,
    }
    assert datetime.fromisoformat(report["last_run_at"]) == tick
    assert report["last_job_id"] is not None
    next_run = datetime.fromisoformat(report["next_run_at"])
    assert before < next_run <= after + timedelta(hours=1)  # the list may straddle an hour
    assert (next_run.minute, next_run.second) == (0, 0)
    ping = listed["ping"]
    assert (ping["every_s"], ping["missed"], ping["grace_s"]) == (60.0, "skip", 5.0)
    assert ping["last_run_at"] is None
    assert datetime.fromisoformat(ping["next_run_at"]).second == 0
    assert report["readable"]
    assert ping["readable"]


@pytest.mark.parametrize(
    "edit",
    [
        "last_tick_at = '10000-01-01Z'",
        "paused_at = '4713-01-01 BC'",
        "last_tick_at = 'infinity'",
        "last_tick_at = now() + interval '30 days'",
        # grace_s has no check in the table: such a value, written by hand, failed the
        # listing (and the console's page) with a 500 for every schedule.
        "grace_s = 'NaN'",
        "grace_s = 'Infinity'",
        "grace_s = 1e300",
    ],
    ids=[
        "year-10000",
        "before-year-1",
        "infinity",
        "ahead-of-the-clock",
        "grace-nan",
        "grace-infinity",
        "grace-1e300",
    ],
)
async def test_a_row_edited_beyond_reading_is_listed_as_unreadable_beside_the_others(
    client: ApiClient, db: Any, db_url: str, edit: str
) -> None:
    await _register(db_url, HOURLY_PARIS, EVERY_MINUTE)
    await db.execute(f"UPDATE schedules SET {edit} WHERE name = 'report'")

    listed = await _list(client)

    assert listed["report"]["readable"] is False
    # Its next run is the first tick after the last one, when that one can be computed (it
    # can, where only grace_s is out of reach).
    computable = "interval" in edit or "grace_s" in edit
    assert (listed["report"]["next_run_at"] is None) == (not computable)
    assert "9999" not in str(listed["report"])  # the reason is logged, not answered
    assert listed["ping"]["readable"] is True


async def test_pause_and_resume_a_schedule(client: ApiClient, db_url: str) -> None:
    await _register(db_url, EVERY_MINUTE)
    paused = await client.post("/v1/schedules/ping/pause")
    assert paused.status_code == 200, paused.text
    body = paused.json()
    assert (body["paused"], body["next_run_at"]) == (True, None)
    assert body["paused_at"] is not None
    assert (await _list(client))["ping"]["paused"] is True
    again = await client.post("/v1/schedules/ping/pause")
    assert again.json()["paused_at"] == body["paused_at"]

    resumed = await client.post("/v1/schedules/ping/resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["paused"] is False
    assert resumed.json()["next_run_at"] is not None


@pytest.mark.parametrize("action", ["pause", "resume"])
async def test_an_unknown_schedule_is_404_and_a_blank_name_400(
    client: ApiClient, action: str
) -> None:
    missing = await client.post(f"/v1/schedules/nope/{action}")
    assert missing.status_code == 404, missing.text
    assert "nope" in error_body(missing)["detail"]
    blank = await client.post(f"/v1/schedules/%20/{action}")
    assert blank.status_code == 400, blank.text
    error_body(blank)
    nul = await client.post(f"/v1/schedules/a%00b/{action}")
    assert nul.status_code == 400, nul.text
    long = await client.post(f"/v1/schedules/{'x' * 256}/{action}")
    assert long.status_code == 400, long.text


async def test_a_key_restricted_to_queues_sees_and_pauses_their_schedules_only(
    make_client: ClientFactory, db_url: str
) -> None:
    await _register(db_url, HOURLY_PARIS, EVERY_MINUTE)
    reader = await _key(db_url, [Scope.JOBS_READ], queues=["reports"])
    admin = await _key(db_url, [Scope.QUEUES_ADMIN], queues=["reports"])
    async with make_client(db_url, key=None) as client:
        assert sorted(await _list(client, reader)) == ["report"]
        refused = await client.post("/v1/schedules/ping/pause", headers=bearer(admin))
        assert refused.status_code == 403, refused.text
        assert "default" not in error_body(refused)["detail"]
        allowed = await client.post("/v1/schedules/report/pause", headers=bearer(admin))
        assert allowed.status_code == 200, allowed.text


async def test_a_client_may_not_hold_the_unique_key_of_a_schedules_tick(
    make_client: ClientFactory, db_url: str
) -> None:
    """A tick's job carries the unique key schedule:<name>:<tick>, and unique keys span every
    queue: a key that may enqueue on one queue only held the keys of a schedule's coming ticks
    on another, and each of those ticks came and went without its job (logged as skipped)."""
    await _register(db_url, HOURLY_PARIS)
    writer = await _key(db_url, [Scope.JOBS_WRITE], queues=["default"])
    tick = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    squat = {"type": "noop", "payload": {"n": 1}, "unique_key": HOURLY_PARIS.unique_key(tick)}
    async with make_client(db_url, key=None) as client:
        one = await client.post("/v1/jobs", json=squat, headers=bearer(writer))
        batch = await client.post("/v1/jobs/batch", json={"jobs": [squat]}, headers=bearer(writer))

    for response in (one, batch):
        assert response.status_code == 400, response.text
        assert "unique_key" in problem_text(error_body(response))
    pool = await create_pool(db_url, max_size=1)
    try:
        taken = await Schedules(pool).take_tick(HOURLY_PARIS, tick, run=True)
    finally:
        await pool.close()
    assert taken is not None
    assert taken.job_id is not None
