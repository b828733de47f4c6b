"""The ``scheduler`` service in-process against a real database: schedulers racing on one
schedule make one job per tick, wake for the next tick, and register a schedule again if its
row goes. (tests/e2e/test_e2e_schedules.py runs real worker processes; tests/core/
test_schedules.py the ticks and the statements.)"""

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from helpers import eventually
from queue_core.schedules import Schedule, Schedules
from queue_worker.scheduler import TICK_SLACK_S, Scheduler

EVERY_SECOND = Schedule(name="tick", every_s=1)


async def _keys(pool: asyncpg.Pool) -> Counter[str]:
    rows = await pool.fetch("SELECT unique_key FROM jobs WHERE type = 'tick'")
    return Counter(r["unique_key"] for r in rows)


async def test_racing_schedulers_make_one_job_per_tick(pool: asyncpg.Pool) -> None:
    schedulers = [Scheduler(Schedules(pool), [EVERY_SECOND]) for _ in range(3)]
    tasks = [asyncio.create_task(s.run()) for s in schedulers]
    try:

        async def three_ticks() -> bool:
            return len(await _keys(pool)) >= 3

        await eventually(three_ticks, timeout_s=6)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    keys = await _keys(pool)
    assert set(keys.values()) == {1}
    ticks = sorted(r["scheduled_at"] for r in await pool.fetch("SELECT scheduled_at FROM jobs"))
    assert ticks == [ticks[0] + timedelta(seconds=n) for n in range(len(ticks))]
    assert sum(s.turns for s in schedulers) >= 3


async def test_a_turn_sleeps_until_just_after_the_next_tick(pool: asyncpg.Pool) -> None:
    scheduler = Scheduler(Schedules(pool), [EVERY_SECOND], refresh_s=60)
    await Schedules(pool).register([EVERY_SECOND])
    sleep_s = await scheduler.turn()
    assert 0 <= sleep_s <= 1 + TICK_SLACK_S


async def test_a_deleted_row_is_registered_again(pool: asyncpg.Pool) -> None:
    scheduler = Scheduler(Schedules(pool), [EVERY_SECOND], refresh_s=0.05)
    task = asyncio.create_task(scheduler.run())
    try:

        async def registered() -> bool:
            count: int = await pool.fetchval("SELECT count(*) FROM schedules")
            return count == 1

        await eventually(registered, timeout_s=5)
        await pool.execute("DELETE FROM schedules")
        await eventually(registered, timeout_s=5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _lag(name: str) -> float | None:
    return REGISTRY.get_sample_value("queue_worker_schedule_lag_seconds", {"schedule": name})


async def test_schedule_lag_is_the_oldest_overdue_tick_then_zero_once_dealt_with(
    pool: asyncpg.Pool,
) -> None:
    hourly = Schedule(name="lag_hourly", every_s=3600)
    schedules = Schedules(pool)
    await schedules.register([hourly])
    # As if no worker had run for three hours: the tick after the watermark is overdue.
    await pool.execute(
        "UPDATE schedules SET last_tick_at = now() - interval '3 hours' WHERE name = $1",
        hourly.name,
    )
    watermark: datetime = await pool.fetchval(
        "SELECT last_tick_at FROM schedules WHERE name = $1", hourly.name
    )
    scheduler = Scheduler(schedules, [hourly], refresh_s=60)
    await scheduler.turn()
    lag = _lag(hourly.name)
    assert lag is not None
    now: datetime = await pool.fetchval("SELECT now()")
    assert lag >= (now - hourly.next_tick(watermark)).total_seconds() - 60
    assert lag > 2 * 3600 - 60
    # That turn dealt with the missed ticks: the next tick is in the future.
    await scheduler.turn()
    assert _lag(hourly.name) == 0
    await schedules.set_paused(hourly.name, paused=True)
    await pool.execute(
        "UPDATE schedules SET last_tick_at = now() - interval '3 hours' WHERE name = $1",
        hourly.name,
    )
    await scheduler.turn()
    assert _lag(hourly.name) == 0, "a paused schedule is not late"


def _unreadable(name: str) -> float | None:
    return REGISTRY.get_sample_value("queue_worker_schedule_unreadable", {"schedule": name})


async def test_a_row_its_ticks_cannot_be_computed_from_stops_that_schedule_only(
    pool: asyncpg.Pool,
) -> None:
    """A timestamp edited by hand to 'infinity' (or near the end of year 9999) made every turn
    raise: the scheduler crashed in a loop, every schedule stopped and /healthz failed."""
    broken, fine = Schedule(name="odd_row", every_s=60), Schedule(name="fine_row", every_s=1)
    scheduler = Scheduler(Schedules(pool), [broken, fine], refresh_s=60)
    await Schedules(pool).register([broken, fine])
    for value in ("infinity", "9999-12-31 23:59:59+00", "-infinity"):
        await pool.execute(
            "UPDATE schedules SET last_tick_at = $1::text::timestamptz WHERE name = 'odd_row'",
            value,
        )
        await pool.execute(
            "UPDATE schedules SET last_tick_at = now() - interval '3 seconds'"
            " WHERE name = 'fine_row'"
        )
        await scheduler.turn()
        assert _unreadable("odd_row") == 1
        made: int = await pool.fetchval("SELECT count(*) FROM jobs WHERE type = 'fine_row'")
        assert made >= 1, value
        await pool.execute("DELETE FROM jobs")

    await pool.execute("UPDATE schedules SET last_tick_at = NULL WHERE name = 'odd_row'")
    await scheduler.turn()
    assert _unreadable("odd_row") == 0


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("last_tick_at", "10000-01-01 00:00:00+00"),
        ("paused_at", "10000-01-01 00:00:00+00"),
        ("last_run_at", "4713-01-01 00:00:00+00 BC"),
        ("created_at", "4713-01-01 00:00:00+00 BC"),
    ],
)
async def test_a_timestamp_python_cannot_hold_stops_that_schedule_only(
    pool: asyncpg.Pool, column: str, value: str
) -> None:
    """asyncpg raised OverflowError for the whole read: every turn of every scheduler failed,
    /healthz answered 503, and GET /v1/schedules failed too."""
    broken, fine = Schedule(name="odd_row", every_s=60), Schedule(name="fine_row", every_s=1)
    schedules = Schedules(pool)
    scheduler = Scheduler(schedules, [broken, fine], refresh_s=60)
    await schedules.register([broken, fine])
    await pool.execute(
        f"UPDATE schedules SET {column} = $1::text::timestamptz WHERE name = 'odd_row'", value
    )
    await pool.execute(
        "UPDATE schedules SET last_tick_at = now() - interval '3 seconds' WHERE name = 'fine_row'"
    )
    with capture_logs() as captured:
        await scheduler.turn()
        await scheduler.turn()
    assert _unreadable("odd_row") == 1
    assert _unreadable("fine_row") == 0
    made: int = await pool.fetchval("SELECT count(*) FROM jobs WHERE type = 'fine_row'")
    assert made >= 1
    said = [e for e in captured if e["event"] == "schedule_unreadable"]
    assert [e["schedule"] for e in said] == ["odd_row"], "said once, not every turn"
    listed = {s.definition.name: s for s in await schedules.list()}
    assert listed["odd_row"].unreadable is not None
    assert listed["odd_row"].next_run(datetime.now(UTC)) is None
    assert listed["fine_row"].unreadable is None

    await pool.execute(
        f"UPDATE schedules SET {column} = now() - interval '1 minute' WHERE name = 'odd_row'"
    )
    await scheduler.turn()
    assert _unreadable("odd_row") == 0


async def test_a_watermark_in_the_future_is_reported_once_until_the_clock_passes_it(
    pool: asyncpg.Pool,
) -> None:
    """A last_tick_at ahead of the clock stalled its schedule without a word: no tick was due,
    the lag read 0 and the schedule counted as readable."""
    ahead, fine = Schedule(name="ahead", every_s=1), Schedule(name="fine_row", every_s=1)
    schedules = Schedules(pool)
    scheduler = Scheduler(schedules, [ahead, fine], refresh_s=60)
    await schedules.register([ahead, fine])
    await pool.execute(
        "UPDATE schedules SET last_tick_at = now() + interval '1 day' WHERE name = 'ahead'"
    )
    with capture_logs() as captured:
        await scheduler.turn()
        await scheduler.turn()
    assert _unreadable("ahead") == 1
    assert _unreadable("fine_row") == 0
    said = [e for e in captured if e["event"] == "schedule_watermark_in_future"]
    assert [(e["schedule"], e["log_level"]) for e in said] == [("ahead", "warning")]

    # Within grace_s of the clock is not reported: a clock a little behind is no stall.
    await pool.execute(
        "UPDATE schedules SET last_tick_at = now() + interval '10 seconds' WHERE name = 'ahead'"
    )
    await scheduler.turn()
    assert _unreadable("ahead") == 0
