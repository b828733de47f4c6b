"""The queues (``/v1/queues``): their depth, their workers, and pausing and resuming them.

A paused queue keeps taking jobs; workers claim none of its jobs (within a second, running
ones finish) until it is resumed. The pause is a row in the ``queues`` table, so it outlives
every restart of workers and API alike (``queue_core.fleet``).
"""

from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK

from queue_api.auth import requires
from queue_api.context import RequestContext
from queue_api.schemas import error_responses
from queue_core.fleet import QueueState
from queue_core.keys import Scope

MAX_QUEUE_NAME_LENGTH = 255  # jobs.queue and queues.name are varchar(255)

QueueName = Annotated[
    str,
    Parameter(
        description="The queue's name, as jobs name it",
        min_length=1,
        max_length=MAX_QUEUE_NAME_LENGTH,
    ),
]


class QueueView(msgspec.Struct, kw_only=True):
    """One queue: its jobs now, whether it is paused, and how many live workers serve it."""

    name: str
    due: Annotated[int, msgspec.Meta(description="Pending jobs due now")]
    scheduled: Annotated[int, msgspec.Meta(description="Pending jobs due later")]
    running: int
    oldest_due_age_s: Annotated[
        float, msgspec.Meta(description="How long the oldest due job has waited; 0 when none")
    ]
    paused: bool
    paused_at: Annotated[datetime | None, msgspec.Meta(description="Paused since; null: runs")]
    workers: Annotated[int, msgspec.Meta(description="Live workers serving this queue")]


class QueueList(msgspec.Struct, kw_only=True):
    queues: list[QueueView]


class QueuePauseState(msgspec.Struct, kw_only=True):
    name: str
    paused: bool
    paused_at: datetime | None

    @classmethod
    def of(cls, state: QueueState) -> "QueuePauseState":
        return cls(name=state.name, paused=state.paused, paused_at=state.paused_at)


def _checked_name(name: str) -> str:
    """400 for a name no queue can have: blank, or with text PostgreSQL cannot store."""
    if not name.strip():
        raise ValidationException(detail="the queue name must not be blank")
    if "\x00" in name or any("\ud800" <= c <= "\udfff" for c in name):
        raise ValidationException(
            detail="the queue name must not contain NUL characters or unpaired surrogates"
        )
    return name


async def queue_views(ctx: RequestContext) -> list[QueueView]:
    """The queues the key may see, by name (this route's and the web console's)."""
    job_queue, fleet, caller = ctx.services.queue, ctx.services.fleet, ctx.caller
    stats = {s.queue: s for s in await job_queue.stats()}
    states = {s.name: s for s in await fleet.queue_states()}
    serving: dict[str, int] = {}
    for worker in await fleet.live_workers():
        for name in worker.queues:
            serving[name] = serving.get(name, 0) + 1
    views = []
    for name in sorted({*stats, *states, *serving}):
        if not caller.allows_queue(name):
            continue
        s = stats.get(name)
        state = states.get(name)
        paused_at = None if state is None else state.paused_at
        views.append(
            QueueView(
                name=name,
                due=0 if s is None else s.due,
                scheduled=0 if s is None else s.scheduled,
                running=0 if s is None else s.running,
                oldest_due_age_s=0.0 if s is None else s.oldest_due_age_s,
                paused=paused_at is not None,
                paused_at=paused_at,
                workers=serving.get(name, 0),
            )
        )
    return views


async def set_queue_paused(ctx: RequestContext, name: str, *, paused: bool) -> QueuePauseState:
    """Pause or resume a queue the key may use (this route's and the web console's)."""
    ctx.caller.check_queues([_checked_name(name)])
    return QueuePauseState.of(await ctx.services.fleet.set_paused(name, paused=paused))


class QueuesController(Controller):
    path = "/v1/queues"
    tags = ["queues"]  # noqa: RUF012 - Litestar reads class attributes

    @get(
        "/",
        operation_id="listQueues",
        summary="List the queues: depth, pause, workers",
        description=(
            "Every queue that has pending or running jobs, has been paused or resumed, or is "
            "served by a live worker. The counts read only pending and running jobs (partial "
            "indexes), never the history. A key restricted to some queues sees those only."
        ),
        responses=error_responses(401, 403, 503),
        **requires(Scope.JOBS_READ),
    )
    async def list_queues(
        self,
        ctx: NamedDependency[RequestContext],
    ) -> QueueList:
        return QueueList(queues=await queue_views(ctx))

    @post(
        "/{name:str}/pause",
        operation_id="pauseQueue",
        summary="Pause a queue: workers stop claiming its jobs",
        description=(
            "Workers claim nothing more from the queue within a second; running jobs finish. "
            "Jobs can still be enqueued. The pause lasts, across restarts, until resumed. "
            "Pausing a paused queue keeps the time it was first paused."
        ),
        status_code=HTTP_200_OK,
        responses=error_responses(400, 401, 403, 503),
        **requires(Scope.QUEUES_ADMIN),
    )
    async def pause(
        self,
        name: QueueName,
        ctx: NamedDependency[RequestContext],
    ) -> QueuePauseState:
        return await set_queue_paused(ctx, name, paused=True)

    @post(
        "/{name:str}/resume",
        operation_id="resumeQueue",
        summary="Resume a paused queue",
        description="Workers claim from the queue again within a second. Resuming a running "
        "queue changes nothing.",
        status_code=HTTP_200_OK,
        responses=error_responses(400, 401, 403, 503),
        **requires(Scope.QUEUES_ADMIN),
    )
    async def resume(
        self,
        name: QueueName,
        ctx: NamedDependency[RequestContext],
    ) -> QueuePauseState:
        return await set_queue_paused(ctx, name, paused=False)
