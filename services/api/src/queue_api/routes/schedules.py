"""The schedules (``/v1/schedules``): the periodic jobs the workers declare, their next and last
runs, and pausing and resuming them.

Schedules are declared in code with their handler (``@task("report", cron="0 * * * *")``) and
registered by each worker that loads it, so there is no POST here: a schedule's definition
belongs with the code that handles its jobs, and is deployed with it. What operators change at
run time is whether it runs (``queues:admin``). The rows live in ``schedules``
(``queue_core.schedules``); a pause takes effect at once and outlives every restart.
"""

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK

from queue_api.auth import Caller, requires
from queue_api.context import RequestContext
from queue_api.schemas import error_responses
from queue_core.keys import Scope
from queue_core.schedules import Schedules, ScheduleState

MAX_SCHEDULE_NAME_LENGTH = 255  # schedules.name is varchar(255)
NOT_FOUND = {404: "No schedule has this name"}

ScheduleName = Annotated[
    str,
    Parameter(
        description="The schedule's name: the job type it enqueues",
        min_length=1,
        max_length=MAX_SCHEDULE_NAME_LENGTH,
    ),
]


class ScheduleView(msgspec.Struct, kw_only=True):
    """One schedule: when it runs, what it enqueues, and where it is."""

    name: Annotated[str, msgspec.Meta(description="Also the type of the jobs it enqueues")]
    queue: str
    cron: Annotated[
        str | None, msgspec.Meta(description="Cron expression (5 fields, or 6 with seconds)")
    ]
    every_s: Annotated[float | None, msgspec.Meta(description="Or: a tick every so many seconds")]
    tz: Annotated[str, msgspec.Meta(description="IANA time zone the cron expression is read in")]
    missed: Annotated[
        str,
        msgspec.Meta(
            description="Ticks later than grace_s (all workers down): 'once' enqueues one job "
            "for the latest of them, 'skip' none"
        ),
    ]
    grace_s: Annotated[float, msgspec.Meta(description="How late a tick may run as on time")]
    paused: bool
    paused_at: Annotated[datetime | None, msgspec.Meta(description="Paused since; null: runs")]
    next_run_at: Annotated[
        datetime | None, msgspec.Meta(description="Its next tick; null while paused")
    ]
    last_run_at: Annotated[
        datetime | None, msgspec.Meta(description="The tick of its latest job; null: none yet")
    ]
    last_job_id: Annotated[UUID | None, msgspec.Meta(description="Its latest job")]
    readable: Annotated[
        bool,
        msgspec.Meta(
            description="false: its row holds what no tick can be computed from, or a last "
            "tick ahead of the clock (edited by hand), so the workers do not run it until the "
            "row is mended; they log schedule_unreadable or schedule_watermark_in_future"
        ),
    ]

    @classmethod
    def of(cls, state: ScheduleState, now: datetime) -> "ScheduleView":
        d = state.definition
        return cls(
            name=d.name,
            queue=d.queue,
            cron=d.cron,
            every_s=d.every_s,
            tz=d.tz,
            missed=d.missed,
            grace_s=d.grace_s,
            paused=state.paused_at is not None,
            paused_at=state.paused_at,
            next_run_at=state.next_run(now),
            last_run_at=state.last_run_at,
            last_job_id=state.last_job_id,
            readable=state.blocked(state.definition, now) is None,
        )


class ScheduleList(msgspec.Struct, kw_only=True):
    schedules: list[ScheduleView]


def _checked_name(name: str) -> str:
    """400 for a name no schedule can have: blank, or with text PostgreSQL cannot store."""
    if not name.strip():
        raise ValidationException(detail="the schedule name must not be blank")
    if "\x00" in name or any("\ud800" <= c <= "\udfff" for c in name):
        raise ValidationException(
            detail="the schedule name must not contain NUL characters or unpaired surrogates"
        )
    return name


async def _set_paused(
    schedules: Schedules, caller: Caller, name: str, *, paused: bool
) -> ScheduleView:
    name = _checked_name(name)
    now, states = await schedules.states([name])
    state = states.get(name)
    if state is None:
        raise NotFoundException(detail=f"no schedule is named {name!r}")
    caller.check_queues([state.definition.queue], what="the queue of this schedule")
    changed = await schedules.set_paused(name, paused=paused)
    if changed is None:  # gone in between: only by hand, rows are never deleted
        raise NotFoundException(detail=f"no schedule is named {name!r}")
    return ScheduleView.of(changed, now)


async def schedule_views(ctx: RequestContext) -> list[ScheduleView]:
    """The schedules of the queues the key may see, by name (this route's and the console's)."""
    schedules, caller = ctx.services.schedules, ctx.caller
    now, _ = await schedules.states([])
    return [
        ScheduleView.of(s, now)
        for s in await schedules.list()
        if caller.allows_queue(s.definition.queue)
    ]


class SchedulesController(Controller):
    path = "/v1/schedules"
    tags = ["schedules"]  # noqa: RUF012 - Litestar reads class attributes

    @get(
        "/",
        operation_id="listSchedules",
        summary="List the schedules: definition, next run, last run, pause",
        description=(
            "Every schedule a worker has declared (periodic jobs, declared with their handler), "
            "by name. A key restricted to some queues sees the schedules of those only."
        ),
        responses=error_responses(401, 403, 503),
        **requires(Scope.JOBS_READ),
    )
    async def list_schedules(
        self,
        ctx: NamedDependency[RequestContext],
    ) -> ScheduleList:
        return ScheduleList(schedules=await schedule_views(ctx))

    @post(
        "/{name:str}/pause",
        operation_id="pauseSchedule",
        summary="Pause a schedule: no job for its ticks until resumed",
        description=(
            "From now on no tick of the schedule enqueues a job, on any worker, across "
            "restarts. Jobs already enqueued are not touched (pause their queue for that). "
            "Pausing a paused schedule keeps the time it was first paused."
        ),
        status_code=HTTP_200_OK,
        responses=error_responses(400, 401, 403, 404, 503, meanings=NOT_FOUND),
        **requires(Scope.QUEUES_ADMIN),
    )
    async def pause(
        self,
        name: ScheduleName,
        ctx: NamedDependency[RequestContext],
    ) -> ScheduleView:
        schedules, caller = ctx.services.schedules, ctx.caller
        return await _set_paused(schedules, caller, name, paused=True)

    @post(
        "/{name:str}/resume",
        operation_id="resumeSchedule",
        summary="Resume a paused schedule",
        description=(
            "Its next tick enqueues a job again; the ticks that came while it was paused are not "
            "run (its missed policy is for outages, not pauses). Workers see the resume within "
            "5 seconds. Resuming a running schedule changes nothing."
        ),
        status_code=HTTP_200_OK,
        responses=error_responses(400, 401, 403, 404, 503, meanings=NOT_FOUND),
        **requires(Scope.QUEUES_ADMIN),
    )
    async def resume(
        self,
        name: ScheduleName,
        ctx: NamedDependency[RequestContext],
    ) -> ScheduleView:
        schedules, caller = ctx.services.schedules, ctx.caller
        return await _set_paused(schedules, caller, name, paused=False)
