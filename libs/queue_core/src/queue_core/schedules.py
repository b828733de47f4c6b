"""Periodic jobs: schedules declared with their handler, and their ticks.

Declare one with the handler (``queue_core.tasks``)::

    @task("report", cron="0 * * * *", tz="Europe/Paris")          # at each hour, Paris time
    @task("heartbeat", every_s=1, missed="skip")                   # each second (tests)

A schedule is named after its task and enqueues a job of that type on ``queue`` with
``payload`` at each *tick*: each instant its cron expression matches in its time zone (five
fields, or six with seconds first; evaluated by ``cronsim``, which handles DST as Debian's cron
does for five fields: a time skipped by the spring change runs at the first instant after it, a
time repeated in autumn runs once), or each multiple of ``every_s`` seconds since the Unix epoch.
cronsim applies that DST rule to five fields only, so a six-field expression whose seconds are
one number (``0 30 2 * * *``) is evaluated as its five minute fields, that second added: it
follows the same rule. One with several seconds a minute (``*/10 * * * * *``) is read by the
wall clock alone: in the repeated hour of the autumn change it runs in both.

**Exactly one job per tick, enforced by the database.** Every worker whose registry declares a
schedule runs its ticks; none is a leader. A tick's job is inserted only by the statement that
moves the schedule's watermark (``schedules.last_tick_at``) from before the tick to the tick, a
conditional UPDATE on one row: PostgreSQL lets one of any number of concurrent updaters change
it and makes the others, which waited on its row lock, re-check the condition on the new row
and change nothing (``sql/schedules.sql``). The job also carries the unique key
``schedule:<name>:<tick>`` held for :data:`TICK_KEY_HOLD_S`, a second guard through the jobs
table's partial unique index. Ticks are taken in order, so the watermark never goes back.

**Late ticks.** A tick run within ``grace_s`` (1 s to an hour) of its instant is on time; each
such tick gets its job (a worker that stalled a few seconds catches up every tick). Ticks later
than that were *missed* (every worker was down, or the schedule paused), and the schedule's
``missed`` policy decides: ``"once"`` enqueues one job, for the latest missed tick; ``"skip"``
enqueues none. Ticks due while a schedule is paused are never run: resuming moves the
watermark to now.
"""

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
from cronsim import CronSim, CronSimError
from uuid_utils.compat import uuid7

from queue_core.db import decode_json, translate_connection_errors
from queue_core.limits import MAX_NAME_CHARS, UNSTORABLE_CHARACTER, unstorable_text_at
from queue_core.sql import SCHEDULE_QUERIES
from queue_core.states import DEFAULT_QUEUE

Missed = Literal["once", "skip"]
MISSED_POLICIES: Final[tuple[Missed, ...]] = ("once", "skip")

# A tick this late is still on time and runs whatever the policy: a minute covers a worker's
# restart or a database failover without calling its ticks "missed".
DEFAULT_GRACE_S: Final = 60.0
# A scheduler wakes a few milliseconds after each tick (queue_worker.scheduler.TICK_SLACK_S),
# then reads the clock over the network: a grace shorter than that made every tick "missed",
# and under missed="skip" no tick ever ran. A second covers the wake-up, a slow read and a GC
# pause; lateness is still measured from the tick, the one instant every worker agrees on.
MIN_GRACE_S: Final = 1.0
MAX_GRACE_S: Final = 3600.0
# The shortest and longest every_s: second-level schedules for tests, and at most a week.
MIN_EVERY_S: Final = 1.0
MAX_EVERY_S: Final = 7 * 24 * 3600.0
# How long a tick's unique key is held after the tick. The watermark alone keeps a tick from
# running twice; the key is a second guard that must outlive any retry of the tick's statement.
TICK_KEY_HOLD_S: Final = 7 * 24 * 3600.0
# What every tick's unique key starts with: ``schedule:<name>:<tick>``. Unique keys span every
# queue, so the API refuses it in a client's key (queue_api.schemas): a client holding a coming
# tick's key made that tick pass without its job.
TICK_KEY_PREFIX: Final = "schedule:"
# The most ticks one turn of a scheduler enqueues for one schedule (grace_s / every_s is at most
# 3600); the rest wait for its next turn, a few milliseconds later.
MAX_TICKS_PER_TURN: Final = 1000

Q_REGISTER: Final = SCHEDULE_QUERIES["register_schedule"]
Q_STATES: Final = SCHEDULE_QUERIES["schedule_states"]
Q_TAKE_TICK: Final = SCHEDULE_QUERIES["take_tick"]
Q_LIST: Final = SCHEDULE_QUERIES["list_schedules"]
Q_SET_PAUSED: Final = SCHEDULE_QUERIES["set_schedule_paused"]


class ScheduleError(ValueError):
    """A schedule declared with values that cannot work (bad cron, unknown time zone...)."""


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US: Final = timedelta(microseconds=1)


def _since_epoch_us(at: datetime) -> int:
    """An aware instant as whole microseconds since the Unix epoch, exactly."""
    if at.tzinfo is None:  # asyncpg reads a timestamptz of ±infinity as a naive max / min
        raise ScheduleError(f"no tick can be computed from {at.isoformat()}: not a finite instant")
    return (at - _EPOCH) // _ONE_US


def _cron(expr: str, start: datetime, *, reverse: bool = False) -> Iterator[datetime]:
    return iter(CronSim(expr, start, reverse=reverse))


_NO_SECONDS: Final = timedelta(0)


def _minutes_and_second(expr: str) -> tuple[str, timedelta]:
    """A six-field expression whose seconds field is one number (``0 30 2 * * *``) as its five
    minute fields and that second: cronsim gives DST its rule for five fields only (a time
    skipped by the spring change runs just after it, one repeated in autumn runs once), and
    read whole, such an expression ran twice on the autumn change's day and not at all on the
    spring one's. Every other expression as it is."""
    fields = expr.split()
    if len(fields) == 6 and fields[0].isascii() and fields[0].isdigit() and int(fields[0]) < 60:
        return " ".join(fields[1:]), timedelta(seconds=int(fields[0]))
    return expr, _NO_SECONDS


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """One periodic job: when (``cron`` in ``tz``, or ``every_s``), what (a job of type
    ``name`` on ``queue`` with ``payload``), and what to do with ticks missed by more than
    ``grace_s`` (``missed``)."""

    name: str
    cron: str | None = None
    every_s: float | None = None
    tz: str = "UTC"
    missed: Missed = "once"
    grace_s: float = DEFAULT_GRACE_S
    queue: str = DEFAULT_QUEUE
    payload: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._check_storable()
        if (self.cron is None) == (self.every_s is None):
            raise ScheduleError(f"schedule {self.name!r}: give either cron or every_s")
        if self.every_s is not None and (
            isinstance(self.every_s, bool)
            or not isinstance(self.every_s, int | float)
            or not MIN_EVERY_S <= self.every_s <= MAX_EVERY_S
        ):
            raise ScheduleError(
                f"schedule {self.name!r}: every_s must be between {MIN_EVERY_S:g} and "
                f"{MAX_EVERY_S:g} seconds"
            )
        try:
            zone = ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file
            raise ScheduleError(f"schedule {self.name!r}: unknown time zone {self.tz!r}") from None
        if self.cron is not None:
            try:
                _cron(self.cron, datetime.now(zone))
            except CronSimError as exc:
                raise ScheduleError(
                    f"schedule {self.name!r}: bad cron expression {self.cron!r}: {exc}"
                ) from None
        if self.missed not in MISSED_POLICIES:
            raise ScheduleError(f"schedule {self.name!r}: missed must be 'once' or 'skip'")
        if not MIN_GRACE_S <= self.grace_s <= MAX_GRACE_S:
            raise ScheduleError(
                f"schedule {self.name!r}: grace_s must be between {MIN_GRACE_S:g} and "
                f"{MAX_GRACE_S:g} seconds"
            )
        try:
            # allow_nan=False: Python writes NaN and Infinity, which jsonb refuses; registering
            # the schedule then failed on every worker at every start.
            json.dumps(self.payload, allow_nan=False)
        except (TypeError, ValueError):
            raise ScheduleError(f"schedule {self.name!r}: payload must be JSON") from None

    def _check_storable(self) -> None:
        """What the schedules table can hold, as the API checks it for jobs: a bad value would
        otherwise pass declaration and fail registration, on every worker, at every start."""
        for field_name, value in (("name", self.name), ("queue", self.queue)):
            if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_CHARS:
                raise ScheduleError(
                    f"schedule {self.name!r}: {field_name} must be 1 to {MAX_NAME_CHARS} "
                    "characters, not blank"
                )
        texts = {"name": self.name, "queue": self.queue, "cron": self.cron, "tz": self.tz}
        for label, text in texts.items():
            if isinstance(text, str) and UNSTORABLE_CHARACTER.search(text):
                raise ScheduleError(
                    f"schedule {self.name!r}: {label} must not contain NUL characters or "
                    "unpaired surrogates, which the database cannot store"
                )
        if (at := unstorable_text_at(self.payload)) is not None:
            raise ScheduleError(
                f"schedule {self.name!r}: payload text at {list(at)} must not contain NUL "
                "characters or unpaired surrogates, which the database cannot store"
            )

    @classmethod
    def unchecked(cls, **fields: Any) -> "Schedule":  # noqa: ANN401 - a row's columns
        """A schedule from a row, not checked: a row some other version wrote (a time zone
        this one lacks, say) is still listed; computing its ticks may then raise."""
        schedule = object.__new__(cls)
        for name in cls.__dataclass_fields__:
            object.__setattr__(schedule, name, fields[name])
        return schedule

    def _every_us(self) -> int:
        """every_s in whole microseconds, the instants' unit. In floating point a tick could
        come out equal to the instant it must be after (every_s=1.1 at 00:00:00.8): a
        scheduler would then take that tick for ever."""
        assert self.every_s is not None  # noqa: S101 - the callers checked
        step = round(self.every_s * 1_000_000)
        if step <= 0:  # only a row written by hand (Schedule.unchecked) can have it
            raise ScheduleError(f"schedule {self.name!r}: every_s must be positive")
        return step

    def next_tick(self, after: datetime) -> datetime:
        """The first tick strictly after ``after`` (an aware datetime), in UTC."""
        if self.every_s is not None:
            step = self._every_us()
            return _EPOCH + (_since_epoch_us(after) // step + 1) * step * _ONE_US
        assert self.cron is not None  # noqa: S101 - __post_init__ checked it
        expr, second = _minutes_and_second(self.cron)
        # A tick at second s of a five-field expression's minute t is after `after` when t is
        # after `after` - s: the five fields' DST rule, then the seconds (never across a clock
        # change, which falls on a whole minute).
        return self._next_cron_tick(expr, after - second) + second

    def _next_cron_tick(self, expr: str, after: datetime) -> datetime:
        # cronsim works in whole seconds: from the second `after` is in, it yields later ones.
        start = after.astimezone(ZoneInfo(self.tz)).replace(microsecond=0)
        for tick in _cron(expr, start):
            # Past a clock going back (the autumn change), cronsim yields the hour's repeated
            # ticks in their first occurrence, before `after`: skipped, or the scheduler would
            # read again and again, every few milliseconds, for up to an hour.
            if (utc := tick.astimezone(UTC)) > after:
                return utc
        raise ScheduleError(f"schedule {self.name!r}: no tick after {after.isoformat()}")

    def latest_tick(self, at: datetime) -> datetime:
        """The last tick at or before ``at`` (an aware datetime), in UTC."""
        if self.every_s is not None:
            step = self._every_us()
            return _EPOCH + _since_epoch_us(at) // step * step * _ONE_US
        assert self.cron is not None  # noqa: S101 - __post_init__ checked it
        expr, second = _minutes_and_second(self.cron)
        at -= second  # as in next_tick
        start = at.astimezone(ZoneInfo(self.tz)).replace(microsecond=0) + timedelta(seconds=1)
        for tick in _cron(expr, start, reverse=True):
            if (latest := tick.astimezone(UTC)) <= at:
                break
        else:
            raise ScheduleError(f"schedule {self.name!r}: no tick at or before {at.isoformat()}")
        # cronsim goes back by the clock on the wall, which in the repeated hour of the autumn
        # change is behind ticks already past (02:00:05 CET comes after 02:30 CEST): the ticks
        # between are taken forward. Elsewhere the first next one is already after `at`.
        while (later := self._next_cron_tick(expr, latest)) <= at:
            latest = later
        return latest + second

    def due(self, watermark: datetime, now: datetime) -> list[tuple[datetime, bool]]:
        """The ticks after ``watermark`` and at or before ``now`` to deal with, in order, each
        with whether it makes a job: the latest missed one (later than ``grace_s``) run under
        ``missed="once"`` or only passed over under ``"skip"``, then every tick on time (at
        most :data:`MAX_TICKS_PER_TURN` in all)."""
        ticks: list[tuple[datetime, bool]] = []
        on_time_from = now - timedelta(seconds=self.grace_s)
        # The latest tick strictly before on_time_from (a tick exactly on it is on time): the
        # instants are whole microseconds, so one less is the last one before it.
        before_on_time = on_time_from - timedelta(microseconds=1)
        if before_on_time > watermark:
            missed = self.latest_tick(before_on_time)
            if missed > watermark:
                ticks.append((missed, self.missed == "once"))
        tick = self.next_tick(max(watermark, before_on_time))
        while tick <= now and len(ticks) < MAX_TICKS_PER_TURN:
            if tick > watermark:
                ticks.append((tick, True))
            tick = self.next_tick(tick)
        return ticks

    def unique_key(self, tick: datetime) -> str:
        return f"{TICK_KEY_PREFIX}{self.name}:{tick.astimezone(UTC).isoformat()}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleState:
    """A schedule's row: its definition as last registered, and its state. ``unreadable``
    says why the row cannot be read (a timestamp beyond what Python holds, say); its
    timestamps are then None and no tick is taken from it until it is mended."""

    definition: Schedule
    paused_at: datetime | None
    last_tick_at: datetime | None
    last_run_at: datetime | None
    last_job_id: UUID | None
    created_at: datetime | None  # None only when unreadable: the column is NOT NULL
    unreadable: str | None = None

    @property
    def watermark(self) -> datetime:
        """Ticks after this are still to deal with: the latest tick dealt with, else the
        schedule's registration (a new schedule runs none of the ticks before it existed)."""
        watermark = self.last_tick_at or self.created_at
        if self.unreadable is not None or watermark is None:
            raise ScheduleError(
                f"schedule {self.definition.name!r}: its row is unreadable: {self.unreadable}"
            )
        return watermark

    def blocked(self, schedule: Schedule, now: datetime) -> tuple[str, str] | None:
        """Why no tick of ``schedule`` is taken from this row now, as (the event the workers
        log, the reason), or None: the row cannot be read, no tick can be computed from its
        last one, or that one is ahead of the clock by more than the grace (set by hand, or by
        a database restored with a clock behind; not moved back, which could run a tick twice).
        ``schedule`` is what ticks are computed with: a worker's own declaration, or the row's
        for a listing."""
        if self.unreadable is not None:
            return "schedule_unreadable", self.unreadable
        if self.paused_at is not None:
            return None  # not run, and nothing to mend
        watermark = self.watermark
        try:
            schedule.next_tick(watermark)
            schedule.next_tick(now)
            # In the try too: a listed row's grace_s has no check in the table, and one set by
            # hand to NaN, infinity or 1e300 is no timedelta (a worker checked its own).
            latest_ok = now + timedelta(seconds=schedule.grace_s)
        except (ArithmeticError, ValueError, OSError) as exc:  # ScheduleError is a ValueError
            return "schedule_unreadable", str(exc) or type(exc).__name__
        if watermark > latest_ok:
            return "schedule_watermark_in_future", f"its last tick, {watermark}, is ahead"
        return None

    def next_run(self, now: datetime) -> datetime | None:
        """When its next job is due: its first tick after ``now`` not dealt with yet (None
        while paused, or when it cannot be computed from the row)."""
        if self.paused_at is not None or self.unreadable is not None:
            return None
        try:
            return self.definition.next_tick(max(self.watermark, now))
        except Exception:  # noqa: BLE001 - an unchecked row may fail anywhere (zoneinfo's OSError)
            # Listing the schedules must not fail for one row written by hand.
            return None


@dataclass(frozen=True, slots=True)
class Taken:
    """A tick this caller took: ``job_id`` is its job, None for a tick passed over."""

    job_id: UUID | None


def _state(row: asyncpg.Record) -> ScheduleState:
    """The row as a state; a row that cannot be read (whatever the reason) is marked
    unreadable rather than raising, so that it fails no reading of the other schedules."""
    try:
        return _read_state(row)
    except Exception as exc:  # noqa: BLE001 - one row written by hand must not stop the others
        return ScheduleState(
            definition=Schedule.unchecked(
                name=row["name"],
                cron=None,
                every_s=None,
                tz="UTC",
                missed="once",
                grace_s=DEFAULT_GRACE_S,
                queue=row["queue"],
                payload={},
            ),
            paused_at=None,
            last_tick_at=None,
            last_run_at=None,
            last_job_id=None,
            created_at=None,
            unreadable=f"{type(exc).__name__}: {exc}",
        )


def _read_state(row: asyncpg.Record) -> ScheduleState:
    fields = {
        "name": row["name"],
        "cron": row["cron"],
        "every_s": row["every_s"],
        "tz": row["tz"],
        "missed": row["missed"],
        "grace_s": row["grace_s"],
        "queue": row["queue"],
        # decode_json: one hand-edited row must not fail the reading of every schedule.
        "payload": decode_json(row["payload"]),
    }
    try:
        definition = Schedule(**fields)
    except Exception:  # noqa: BLE001 - ScheduleError, or what a value no check foresaw raises
        definition = Schedule.unchecked(**fields)
    return ScheduleState(
        definition=definition,
        paused_at=row["paused_at"],
        last_tick_at=row["last_tick_at"],
        last_run_at=row["last_run_at"],
        last_job_id=row["last_job_id"],
        created_at=row["created_at"],
        unreadable=(
            "a timestamp (paused_at, last_tick_at, last_run_at or created_at) is outside the "
            "years 1 to 9999"
            if row["out_of_range"]
            else None
        ),
    )


class Schedules:
    """The ``schedules`` table: registering, ticking, listing, pausing (``sql/schedules.sql``)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def register(self, schedules: Sequence[Schedule]) -> None:
        """Create each schedule's row, or update its definition; its state stays."""
        async with translate_connection_errors():
            for s in schedules:
                await Q_REGISTER.execute(
                    self._pool,
                    name=s.name,
                    queue=s.queue,
                    cron=s.cron,
                    every_s=None if s.every_s is None else float(s.every_s),
                    tz=s.tz,
                    missed=s.missed,
                    grace_s=float(s.grace_s),
                    payload=json.dumps(s.payload),
                )

    async def states(self, names: Sequence[str]) -> tuple[datetime, dict[str, ScheduleState]]:
        """The database's clock and the rows of the schedules ``names``."""
        async with translate_connection_errors():
            rows = await Q_STATES.fetch(self._pool, names=list(names))
        return rows[0]["now"], {r["name"]: _state(r) for r in rows if r["name"] is not None}

    async def take_tick(self, schedule: Schedule, tick: datetime, *, run: bool) -> Taken | None:
        """Deal with ``tick`` of ``schedule``: move its watermark to the tick and, if ``run``,
        enqueue the tick's job, both in one statement. None when another worker took the tick
        first or the schedule is paused; else :class:`Taken`, with the new job's id if ``run``.
        """
        job_id = uuid7()
        async with translate_connection_errors():
            row = await Q_TAKE_TICK.fetchrow(
                self._pool,
                name=schedule.name,
                tick=tick,
                run=run,
                job_id=job_id,
                payload=json.dumps(schedule.payload),
                queue=schedule.queue,
                unique_key=schedule.unique_key(tick),
                unique_for_s=TICK_KEY_HOLD_S,
            )
        if row is None:
            return None
        return Taken(None if row["id"] is None else UUID(str(row["id"])))

    async def list(self) -> list[ScheduleState]:
        async with translate_connection_errors():
            rows = await Q_LIST.fetch(self._pool)
        return [_state(r) for r in rows]

    async def set_paused(self, name: str, *, paused: bool) -> ScheduleState | None:
        """Pause or resume schedule ``name``; None if there is no such schedule."""
        async with translate_connection_errors():
            row = await Q_SET_PAUSED.fetchrow(self._pool, name=name, paused=paused)
        return None if row is None else _state(row)
