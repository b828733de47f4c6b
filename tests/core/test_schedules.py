"""Periodic jobs (queue_core.schedules): ticks in a time zone across DST, the missed-tick policy,
and one job per tick however many takers race for it, decided by the database."""

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from queue_core.db import UNDECODABLE_JSON
from queue_core.schedules import (
    MAX_TICKS_PER_TURN,
    MIN_GRACE_S,
    Schedule,
    ScheduleError,
    Schedules,
    Taken,
)
from queue_core.tasks import TaskRegistry

PARIS = "Europe/Paris"


def utc(  # noqa: PLR0917 - datetime's own fields, in its order
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def _ticks(schedule: Schedule, start: datetime, n: int) -> list[datetime]:
    out, t = [], start
    for _ in range(n):
        t = schedule.next_tick(t)
        out.append(t)
    return out


# --- ticks -----------------------------------------------------------------------------------


def test_an_hourly_paris_schedule_ticks_every_real_hour_across_both_dst_changes() -> None:
    hourly = Schedule(name="report", cron="0 * * * *", tz=PARIS)
    # 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC); 2026-10-25: 03:00 CEST becomes
    # 02:00 CET (01:00 UTC). Every hour of real time still has one tick, neither two nor none.
    for start in (utc(2026, 3, 28, 22), utc(2026, 10, 24, 22)):
        ticks = _ticks(hourly, start, 6)
        assert ticks == [start + timedelta(hours=h) for h in range(1, 7)]


def test_a_daily_time_skipped_in_spring_runs_at_the_first_instant_after_and_once_in_autumn() -> (
    None
):
    daily = Schedule(name="nightly", cron="30 2 * * *", tz=PARIS)
    # 02:30 does not exist on 2026-03-29 in Paris: the tick is at 03:00 CEST (01:00 UTC).
    assert _ticks(daily, utc(2026, 3, 28, 12), 2) == [utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30)]
    # 02:30 happens twice on 2026-10-25: one tick, the first (CEST, 00:30 UTC).
    assert _ticks(daily, utc(2026, 10, 24, 12), 2) == [
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 26, 1, 30),
    ]


@pytest.mark.parametrize("second", [0, 15])
def test_six_fields_with_one_second_follow_the_dst_rule_of_five(second: int) -> None:
    # Read whole by cronsim, "0 30 2 * * *" had no tick on 2026-03-29 in Paris and two on
    # 2026-10-25: as "30 2 * * *" it has one each day, the given second into its minute.
    daily = Schedule(name="nightly", cron=f"{second} 30 2 * * *", tz=PARIS)
    offset = timedelta(seconds=second)
    assert _ticks(daily, utc(2026, 3, 28, 12), 2) == [
        utc(2026, 3, 29, 1) + offset,
        utc(2026, 3, 30, 0, 30) + offset,
    ]
    assert _ticks(daily, utc(2026, 10, 24, 12), 2) == [
        utc(2026, 10, 25, 0, 30) + offset,
        utc(2026, 10, 26, 1, 30) + offset,
    ]
    t = utc(2026, 10, 24, 23)
    while t < utc(2026, 10, 25, 3):  # through the repeated hour, a second either side of ticks
        assert daily.next_tick(t) > t >= daily.latest_tick(t), t
        t += timedelta(seconds=7)


def test_in_the_repeated_hour_the_next_tick_is_after_and_the_latest_at_or_before() -> None:
    """cronsim yields the repeated hour's times in their first occurrence: from inside the
    second one, the "next" 02:30 was 00:30 UTC, before the instant asked about, and the
    scheduler read its rows every few milliseconds until the hour was over."""
    daily = Schedule(name="nightly", cron="30 2 * * *", tz=PARIS)
    inside_second_occurrence = utc(2026, 10, 25, 1, 0, 5)  # 02:00:05 CET, after 02:59 CEST
    assert daily.next_tick(inside_second_occurrence) == utc(2026, 10, 26, 1, 30)
    assert daily.latest_tick(inside_second_occurrence) == utc(2026, 10, 25, 0, 30)
    early = Schedule(name="early", cron="15 1 * * *", tz="America/New_York")
    t = utc(2026, 1, 1)
    while t < utc(2027, 1, 1):  # every 7 minutes of a year, both changes included
        assert early.next_tick(t) > t >= early.latest_tick(t), t
        t += timedelta(minutes=7)


def test_a_cron_schedule_is_in_its_time_zone_not_in_utc() -> None:
    nine = Schedule(name="standup", cron="0 9 * * 1-5", tz="America/New_York")
    assert nine.next_tick(utc(2026, 12, 4, 12)) == utc(2026, 12, 4, 14)  # 09:00 EST, a Friday
    assert nine.next_tick(utc(2026, 12, 4, 14)) == utc(2026, 12, 7, 14)  # strictly after: Monday


def test_latest_tick_is_at_or_before_and_next_tick_strictly_after() -> None:
    hourly = Schedule(name="report", cron="0 * * * *", tz=PARIS)
    assert hourly.latest_tick(utc(2026, 12, 4, 10)) == utc(2026, 12, 4, 10)
    assert hourly.latest_tick(utc(2026, 12, 4, 10, 59, 59, 999_999)) == utc(2026, 12, 4, 10)
    assert hourly.next_tick(utc(2026, 12, 4, 10)) == utc(2026, 12, 4, 11)
    assert hourly.next_tick(utc(2026, 12, 4, 9, 59, 59, 999_999)) == utc(2026, 12, 4, 10)
    every = Schedule(name="ping", every_s=15)
    assert every.latest_tick(utc(2026, 12, 4, 10, 0, 14, 999_999)) == utc(2026, 12, 4, 10)
    assert every.next_tick(utc(2026, 12, 4, 10)) == utc(2026, 12, 4, 10, 0, 15)


def test_six_field_cron_has_seconds() -> None:
    s = Schedule(name="fast", cron="*/20 * * * * *")
    assert _ticks(s, utc(2026, 12, 4, 10), 3) == [
        utc(2026, 12, 4, 10, 0, 20),
        utc(2026, 12, 4, 10, 0, 40),
        utc(2026, 12, 4, 10, 1),
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "either cron or every_s"),
        ({"cron": "* * * * *", "every_s": 1}, "either cron or every_s"),
        ({"cron": "61 * * * *"}, "bad cron expression"),
        ({"cron": "0 * * * *", "tz": "Mars/Olympus"}, "unknown time zone"),
        ({"every_s": 0.5}, "every_s must be between"),
        ({"every_s": True}, "every_s must be between"),
        ({"every_s": 1, "missed": "twice"}, "missed must be"),
        ({"every_s": 1, "grace_s": -1}, "grace_s must be"),
        ({"every_s": 1, "grace_s": 0}, "grace_s must be between 1 and"),
        ({"every_s": 1, "grace_s": 0.5}, "grace_s must be between 1 and"),
        ({"every_s": 1, "payload": {"x": object()}}, "payload must be JSON"),
        # Python writes them as NaN and Infinity, which no JSON (and no jsonb) reads: register()
        # failed on every worker at every start, and every other schedule with it.
        ({"every_s": 1, "payload": {"x": [float("nan")]}}, "payload must be JSON"),
        ({"every_s": 1, "payload": {"x": float("-inf")}}, "payload must be JSON"),
        # What the table cannot hold failed register() on every worker at every start.
        ({"every_s": 1, "payload": {"x": ["a\u0000b"]}}, r"payload text at \['x', 0\]"),
        ({"every_s": 1, "payload": {"\ud800": 1}}, "payload text at"),
        ({"every_s": 1, "queue": "q" * 256}, "queue must be 1 to 255"),
        ({"every_s": 1, "queue": " "}, "queue must be 1 to 255"),
        ({"every_s": 1, "queue": "a\u0000"}, "queue must not contain NUL"),
        ({"cron": "0 * * * *", "tz": "x" * 300}, "unknown time zone"),
        ({"cron": "0 * * * *", "tz": "UTC\u0000"}, "tz must not contain NUL"),
    ],
)
def test_a_bad_schedule_is_refused_at_declaration(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        Schedule(name="bad", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["n" * 256, "a\u0000b", "a\udc00b", " "])
def test_a_schedule_name_the_table_cannot_hold_is_refused_at_import(name: str) -> None:
    registry = TaskRegistry()
    with pytest.raises(ScheduleError, match="name must"):

        @registry.task(name, every_s=60)
        async def report(_job: object) -> None:
            pass


def test_the_task_decorator_declares_a_schedule_named_after_the_task() -> None:
    registry = TaskRegistry()

    @registry.task("report", cron="0 * * * *", tz=PARIS, missed="skip", payload={"a": 1})
    async def report(_job: object) -> None:
        pass

    @registry.task("plain")
    async def plain(_job: object) -> None:
        pass

    [schedule] = registry.schedules()
    assert (schedule.name, schedule.cron, schedule.tz, schedule.missed) == (
        "report",
        "0 * * * *",
        PARIS,
        "skip",
    )
    assert schedule.payload == {"a": 1}
    assert schedule.queue == "default"


# --- due ticks and the missed policy -------------------------------------------------------------

T0 = utc(2026, 12, 4, 10)


@pytest.mark.parametrize("every_s", [1.0, 1.1, 1.3, 7.7, 1.01, 86_400.5])
def test_a_tick_is_strictly_after_and_the_latest_at_or_before_whatever_the_step(
    every_s: float,
) -> None:
    # In floating point, every_s=1.1 at 00:00:00.8 gave that very instant as the next tick:
    # due() returned one tick a thousand times, then looped for ever on the next turn.
    s = Schedule(name="odd", every_s=every_s)
    start = utc(2026, 1, 1)
    for n in range(5000):
        at = start + timedelta(microseconds=n * 100_003)
        after, latest = s.next_tick(at), s.latest_tick(at)
        assert latest <= at < after
        assert after - latest == timedelta(seconds=every_s), at  # consecutive ticks
    due = s.due(start, start + timedelta(seconds=30))
    assert len(due) == len(set(due))


def test_on_time_ticks_all_run_even_several_at_once() -> None:
    s = Schedule(name="ping", every_s=1, grace_s=10)
    # A worker that stalled 3 s catches up every tick: they are all within the grace.
    assert s.due(T0, T0 + timedelta(seconds=3.5)) == [
        (T0 + timedelta(seconds=n), True) for n in (1, 2, 3)
    ]
    assert s.due(T0, T0 + timedelta(seconds=0.5)) == []


@pytest.mark.parametrize(("policy", "runs"), [("once", True), ("skip", False)])
@pytest.mark.parametrize(("now_s", "missed_s"), [(10.5, 8), (10, 7)])
def test_missed_ticks_give_one_job_or_none_then_the_on_time_ones(
    policy: str,
    runs: bool,  # noqa: FBT001 - a parameter of the test
    now_s: float,
    missed_s: int,
) -> None:
    s = Schedule(name="ping", every_s=1, grace_s=2, missed=policy)  # type: ignore[arg-type]
    # At 10.5 s, ticks 1..8 are more than 2 s late: missed, the latest (8) stands for them all;
    # 9 and 10 are on time. At 10 s, tick 8 is exactly 2 s late, on time; 7 stands for 1..7.
    assert s.due(T0, T0 + timedelta(seconds=now_s)) == [
        (T0 + timedelta(seconds=missed_s), runs),
        *((T0 + timedelta(seconds=n), True) for n in range(missed_s + 1, 11)),
    ]


def test_a_missed_daily_tick_after_a_long_outage_is_one_tick_computed_not_iterated() -> None:
    s = Schedule(name="nightly", cron="30 2 * * *", tz=PARIS)
    # 3 years down: one catch-up tick, the latest, found without walking a thousand days.
    due = s.due(utc(2023, 12, 1), utc(2026, 12, 4, 12))
    assert due == [(utc(2026, 12, 4, 1, 30), True)]


def test_one_turn_takes_at_most_max_ticks() -> None:
    s = Schedule(name="ping", every_s=1, grace_s=3600)
    assert len(s.due(T0, T0 + timedelta(hours=1))) == MAX_TICKS_PER_TURN


# --- the database decides ------------------------------------------------------------------------


async def _rows(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT type, unique_key, scheduled_at, payload::text AS payload, queue FROM jobs"
    )
    return rows


async def test_many_takers_of_one_tick_make_one_job(pool: asyncpg.Pool) -> None:
    s = Schedule(name="ping", every_s=1, payload={"k": "v"}, queue="periodic")
    store = Schedules(pool)
    await store.register([s])
    tick = utc(2026, 12, 4, 10)
    taken = await asyncio.gather(*(store.take_tick(s, tick, run=True) for _ in range(20)))
    assert sum(t is not None for t in taken) == 1
    [row] = await _rows(pool)
    assert row["type"] == "ping"
    assert row["queue"] == "periodic"
    assert row["scheduled_at"] == tick
    assert row["unique_key"] == "schedule:ping:2026-12-04T10:00:00+00:00"
    assert row["payload"] == '{"k": "v"}'
    # The watermark never goes back: an earlier tick is no longer taken.
    assert await store.take_tick(s, tick - timedelta(seconds=1), run=True) is None
    _, states = await store.states(["ping"])
    assert states["ping"].last_tick_at == tick
    assert states["ping"].last_job_id == next(t.job_id for t in taken if t is not None)


async def test_concurrent_turns_over_many_ticks_make_one_job_per_tick(pool: asyncpg.Pool) -> None:
    s = Schedule(name="ping", every_s=1)
    store = Schedules(pool)
    await store.register([s])
    ticks = [utc(2026, 12, 4, 10) + timedelta(seconds=n) for n in range(30)]

    async def taker() -> None:
        for tick in ticks:
            await store.take_tick(s, tick, run=True)

    await asyncio.gather(*(taker() for _ in range(5)))
    keys = Counter(r["unique_key"] for r in await _rows(pool))
    assert sorted(keys) == sorted(s.unique_key(t) for t in ticks)
    assert set(keys.values()) == {1}


async def test_the_unique_key_guards_a_tick_even_if_the_watermark_is_set_back(
    pool: asyncpg.Pool,
) -> None:
    s = Schedule(name="ping", every_s=1)
    store = Schedules(pool)
    await store.register([s])
    tick = utc(2026, 12, 4, 10)
    assert await store.take_tick(s, tick, run=True) is not None
    await pool.execute("UPDATE schedules SET last_tick_at = NULL")
    assert await store.take_tick(s, tick, run=True) == Taken(None)  # the index refused it
    assert len(await _rows(pool)) == 1


async def test_a_skipped_tick_moves_the_watermark_and_makes_no_job(pool: asyncpg.Pool) -> None:
    s = Schedule(name="ping", every_s=1)
    store = Schedules(pool)
    await store.register([s])
    tick = utc(2026, 12, 4, 10)
    assert await store.take_tick(s, tick, run=False) == Taken(None)
    assert await store.take_tick(s, tick, run=False) is None  # taken already
    assert await _rows(pool) == []
    _, states = await store.states(["ping"])
    assert (states["ping"].last_tick_at, states["ping"].last_run_at) == (tick, None)


async def test_a_paused_schedule_takes_no_tick_and_resuming_skips_the_paused_ones(
    pool: asyncpg.Pool,
) -> None:
    s = Schedule(name="ping", every_s=1)
    store = Schedules(pool)
    await store.register([s])
    paused = await store.set_paused("ping", paused=True)
    assert paused is not None
    assert paused.paused_at is not None
    assert paused.next_run(datetime.now(UTC)) is None
    assert await store.take_tick(s, utc(2026, 12, 4, 10), run=True) is None
    again = await store.set_paused("ping", paused=True)
    assert again is not None
    assert again.paused_at == paused.paused_at  # pausing twice keeps the first instant
    resumed = await store.set_paused("ping", paused=False)
    assert resumed is not None
    assert resumed.paused_at is None
    now, _ = await store.states([])
    assert resumed.last_tick_at is not None
    assert resumed.last_tick_at <= now
    assert s.due(resumed.watermark, resumed.last_tick_at) == []  # nothing of the pause is due
    assert await store.set_paused("nope", paused=True) is None


async def test_registering_again_keeps_the_state_and_updates_the_definition(
    pool: asyncpg.Pool,
) -> None:
    store = Schedules(pool)
    await store.register([Schedule(name="report", cron="0 * * * *")])
    await store.set_paused("report", paused=True)
    await store.register([Schedule(name="report", cron="30 * * * *", tz=PARIS)])
    [state] = await store.list()
    assert (state.definition.cron, state.definition.tz) == ("30 * * * *", PARIS)
    assert state.paused_at is not None


async def test_a_row_this_version_cannot_read_is_still_listed_without_a_next_run(
    pool: asyncpg.Pool,
) -> None:
    store = Schedules(pool)
    await store.register([Schedule(name="report", cron="0 * * * *")])
    await pool.execute("UPDATE schedules SET tz = 'Mars/Olympus', cron = 'not a cron'")
    [state] = await store.list()
    assert (state.definition.tz, state.definition.cron) == ("Mars/Olympus", "not a cron")
    assert state.next_run(datetime.now(UTC)) is None


@pytest.mark.parametrize("every_s", ["0", "-5", "1e-9", "'NaN'", "'Infinity'", "1e300"])
async def test_a_row_with_an_every_s_no_tick_comes_of_is_listed_without_a_next_run(
    pool: asyncpg.Pool, every_s: str
) -> None:
    # Written by hand: a step of no microseconds, or none at all, must not loop or raise.
    store = Schedules(pool)
    await store.register([Schedule(name="odd", every_s=60)])
    await pool.execute(f"UPDATE schedules SET every_s = {every_s}")
    [state] = await store.list()
    assert state.next_run(datetime.now(UTC)) is None


async def test_a_payload_python_cannot_read_fails_no_reading_of_the_schedules(
    pool: asyncpg.Pool,
) -> None:
    # jsonb prints 1e5000 as an integer of 5,001 digits; Python reads at most 4,300. The
    # scheduler reads every schedule of the worker at once: one such row stopped them all.
    store = Schedules(pool)
    await store.register(
        [Schedule(name="odd", cron="0 * * * *"), Schedule(name="report", cron="0 * * * *")]
    )
    await pool.execute("""UPDATE schedules SET payload = '{"n": 1e5000}' WHERE name = 'odd'""")
    _, states = await store.states(["odd", "report"])
    odd: object = states["odd"].definition.payload  # read as the row has it, unchecked
    assert odd is UNDECODABLE_JSON
    assert states["report"].definition.payload == {}


async def test_a_row_with_a_time_zone_too_long_for_a_file_name_is_listed_without_a_next_run(
    pool: asyncpg.Pool,
) -> None:
    # ZoneInfo raised OSError ("File name too long"), which neither reading nor listing caught:
    # one such row failed GET /v1/schedules and every turn of the scheduler.
    store = Schedules(pool)
    await store.register(
        [Schedule(name="odd", cron="0 * * * *"), Schedule(name="report", cron="0 * * * *")]
    )
    await pool.execute("UPDATE schedules SET tz = repeat('x', 300) WHERE name = 'odd'")
    listed = {s.definition.name: s for s in await store.list()}
    assert listed["odd"].next_run(datetime.now(UTC)) is None
    assert listed["report"].next_run(datetime.now(UTC)) is not None
    _, states = await store.states(["odd", "report"])
    assert states["odd"].definition.tz == "x" * 300


async def test_a_timestamp_beyond_year_9999_fails_no_reading_of_the_schedules(
    pool: asyncpg.Pool,
) -> None:
    store = Schedules(pool)
    await store.register([Schedule(name="odd", every_s=60), Schedule(name="report", every_s=60)])
    await pool.execute("UPDATE schedules SET paused_at = '10000-01-01Z' WHERE name = 'odd'")
    _, states = await store.states(["odd", "report"])
    assert states["odd"].unreadable is not None
    assert states["odd"].paused_at is None
    with pytest.raises(ScheduleError, match="unreadable"):
        _ = states["odd"].watermark
    assert states["report"].unreadable is None
    assert [s.definition.name for s in await store.list()] == ["odd", "report"]
    paused = await store.set_paused("odd", paused=True)  # keeps its paused_at
    assert paused is not None
    assert paused.unreadable is not None


def test_with_the_least_grace_a_tick_read_just_after_its_instant_runs_under_skip() -> None:
    """grace_s=0 was accepted, but a scheduler reads the clock TICK_SLACK_S (and a round trip)
    after each tick: every tick was missed and, under missed="skip", none ever ran."""
    s = Schedule(name="s", every_s=60, missed="skip", grace_s=MIN_GRACE_S)
    tick = utc(2026, 12, 4, 10, 1)
    read_at = tick + timedelta(milliseconds=50)
    assert s.due(utc(2026, 12, 4, 10), read_at) == [(tick, True)]
