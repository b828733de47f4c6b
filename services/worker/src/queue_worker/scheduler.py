"""Periodic jobs: the ``scheduler`` service, on every worker whose tasks declare schedules.

At start it registers the schedules of the worker's registry (an upsert per schedule: the
definition as this worker's code declares it; pauses and past ticks stay). Then, each turn, it
reads the schedules' rows and the database's clock in one statement, and for each schedule not
paused deals with its due ticks in order (:meth:`queue_core.schedules.Schedule.due`): one
``take_tick`` statement each, which enqueues the tick's job only if no other worker took that
tick first. It sleeps until the earliest next tick, at most :data:`SCHEDULE_REFRESH_S` (so a
resume or a definition changed by another worker's deploy is seen within it; a pause needs no
wait: ``take_tick`` never takes a paused schedule's tick).

Every worker runs the same loop on the same rows; none is a leader, and the database, not
timing, makes each tick one job. A worker killed mid-turn leaves the rest to the others.
"""

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from prometheus_client import Counter, Gauge

from queue_core.log import get_logger
from queue_core.retry import jittered
from queue_core.schedules import Schedule, Schedules

if TYPE_CHECKING:
    from datetime import datetime

log = get_logger("queue_worker.scheduler")

# The ticks this worker dealt with; the sum over workers is every tick dealt with. Schedule
# names come from the code (the tasks' names), so the labels stay few.
TICKS = Counter(
    "queue_worker_schedule_ticks_total",
    "Ticks of schedules this worker took: enqueued (made the job) or skipped (missed, policy "
    "skip); a tick another worker took first counts there",
    ["schedule", "outcome"],
)

# How far behind each schedule is, as every worker sees it at each read: the age of the oldest
# tick not dealt with yet. Normally a few milliseconds (a worker wakes just after each tick);
# it grows when no worker can take ticks (take_tick failing, every scheduler stuck). After an
# outage it shows the missed ticks' age for one turn, then drops as they are dealt with.
LAG = Gauge(
    "queue_worker_schedule_lag_seconds",
    "How late the oldest tick of each schedule not yet dealt with was when this worker last "
    "read the schedules (the database's clock); 0 when none was due or the schedule is paused.",
    ["schedule"],
)

# 1 while a schedule's row holds what its ticks cannot be computed from (a timestamp edited by
# hand to 'infinity', say), or a watermark later than the clock plus grace_s, which stalls it
# just as surely: it takes no tick until the row is mended; the others carry on.
UNREADABLE = Gauge(
    "queue_worker_schedule_unreadable",
    "1 while this worker cannot run a schedule because of its row (see the log events "
    "schedule_unreadable and schedule_watermark_in_future); the schedule is not run until the "
    "row is mended",
    ["schedule"],
)

# The longest sleep between two reads (±25 %): a resume reaches this worker within it.
SCHEDULE_REFRESH_S: Final = 5.0
# Woken this long after a tick's instant: the database's clock and this worker's sleep need not
# agree to the millisecond, and waking before the tick would only read again.
TICK_SLACK_S: Final = 0.005


class Scheduler:
    def __init__(
        self,
        schedules: Schedules,
        declared: Sequence[Schedule],
        *,
        refresh_s: float = SCHEDULE_REFRESH_S,
        queues: Sequence[str] | None = None,
    ) -> None:
        """``queues``: the worker's own (WORKER_QUEUES); a schedule whose jobs go elsewhere is
        still ticked here, with a warning, since another worker may serve that queue."""
        self.name = "scheduler"
        self.turns = 0  # reads done: the supervisor's measure of progress
        self._schedules = schedules
        self._declared = {s.name: s for s in declared}
        self._refresh_s = refresh_s
        self._registered = False
        # Schedules not run because of their row, each with the event that said so (once).
        self._broken: dict[str, str] = {}
        for s in declared:
            UNREADABLE.labels(s.name).set(0)  # a series from the start, for the alert
            if queues is not None and s.queue not in queues:
                log.warning("schedule_queue_not_served_here", schedule=s.name, queue=s.queue)

    async def run(self) -> None:
        while True:
            if not self._registered:
                await self._schedules.register(list(self._declared.values()))
                self._registered = True
                log.info("schedules_registered", schedules=sorted(self._declared))
            sleep_s = await self.turn()
            self.turns += 1
            await asyncio.sleep(sleep_s)

    async def turn(self) -> float:
        """Take every due tick of this worker's schedules; return how long to sleep."""
        now, states = await self._schedules.states(list(self._declared))
        wake_at: datetime | None = None
        for name, schedule in self._declared.items():
            state = states.get(name)
            if state is None:  # its row was deleted by hand: register it again next turn
                self._registered = False
                continue
            # A row edited by hand (a last tick at 'infinity', say, or ahead of the clock):
            # this schedule waits for it to be mended, the others carry on. The same test as
            # GET /v1/schedules's "readable" (ScheduleState.blocked).
            if (blocked := state.blocked(schedule, now)) is not None:
                LAG.labels(name).set(0)
                event, reason = blocked
                if event == "schedule_watermark_in_future":
                    self._watermark_ahead(name, state.watermark, now)
                    upcoming = schedule.next_tick(now)  # it could be computed (blocked)
                    wake_at = upcoming if wake_at is None else min(wake_at, upcoming)
                else:
                    self._unreadable(name, reason, watermark=state.last_tick_at)
                continue
            if state.paused_at is not None:
                LAG.labels(name).set(0)
                self._readable(name)  # a paused schedule is not run: nothing to mend for it
                continue
            watermark = state.watermark
            oldest = schedule.next_tick(watermark)  # blocked computed both already
            due = schedule.due(watermark, now)
            upcoming = schedule.next_tick(now)
            self._readable(name)
            LAG.labels(name).set(max(0.0, (now - oldest).total_seconds()))
            await self._take(name, schedule, due, now)
            wake_at = upcoming if wake_at is None else min(wake_at, upcoming)
        refresh_s = jittered(self._refresh_s)
        if wake_at is None:
            return refresh_s
        return min(refresh_s, max(0.0, (wake_at - now).total_seconds()) + TICK_SLACK_S)

    async def _take(
        self, name: str, schedule: Schedule, due: Sequence[tuple["datetime", bool]], now: "datetime"
    ) -> None:
        """Take each due tick in order, as :meth:`Schedule.due` gave them."""
        for tick, run in due:
            taken = await self._schedules.take_tick(schedule, tick, run=run)
            if taken is None:
                continue  # another worker took it first, or a pause came meanwhile
            # How late the tick was when this turn read the clock: what decided whether
            # it was missed (later than grace_s), unlike the job's created_at, which also
            # counts the turn's own time.
            late_s = (now - tick).total_seconds()
            if taken.job_id is not None:
                TICKS.labels(name, "enqueued").inc()
                log.info("schedule_enqueued", schedule=name, tick=tick.isoformat(), late_s=late_s)
            else:
                TICKS.labels(name, "skipped").inc()
                log.info(
                    "schedule_ticks_skipped",
                    schedule=name,
                    through=tick.isoformat(),
                    late_s=late_s,
                )

    def _readable(self, name: str) -> None:
        if self._broken.pop(name, None) is not None:
            UNREADABLE.labels(name).set(0)
            log.info("schedule_readable_again", schedule=name)

    def _unreadable(self, name: str, error: str, *, watermark: "datetime | None" = None) -> None:
        UNREADABLE.labels(name).set(1)
        if self._broken.get(name) != "schedule_unreadable":  # said once, not every turn
            self._broken[name] = "schedule_unreadable"
            log.error(
                "schedule_unreadable",
                schedule=name,
                watermark=None if watermark is None else str(watermark),
                error=error,
                detail="its ticks cannot be computed from its row (last_tick_at, created_at, "
                "paused_at...): mend the row, or delete it and it is registered again",
            )

    def _watermark_ahead(self, name: str, watermark: "datetime", now: "datetime") -> None:
        UNREADABLE.labels(name).set(1)
        if self._broken.get(name) != "schedule_watermark_in_future":  # once, not every turn
            self._broken[name] = "schedule_watermark_in_future"
            log.warning(
                "schedule_watermark_in_future",
                schedule=name,
                watermark=watermark.isoformat(),
                now=now.isoformat(),
                detail="no tick is taken until the database's clock passes its last_tick_at: "
                "set it back by hand to resume sooner",
            )
