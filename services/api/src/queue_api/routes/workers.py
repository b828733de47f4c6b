"""The live workers (``GET /v1/workers``): who serves which queues and job types.

Each worker registers itself at start, beats every few seconds and removes itself on a clean
shutdown (``queue_core.fleet``); one silent for ``WORKER_GONE_AFTER_S`` is not listed.
"""

from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency

from queue_api.auth import requires
from queue_api.context import RequestContext
from queue_api.schemas import error_responses
from queue_core.fleet import LiveWorker
from queue_core.keys import Scope


class WorkerView(msgspec.Struct, kw_only=True):
    id: Annotated[str, msgspec.Meta(description="Its lease owner id, as jobs it runs name it")]
    host: str
    pid: int
    queues: list[str]
    task_types: Annotated[list[str], msgspec.Meta(description="The job types it has handlers for")]
    concurrency: int
    started_at: datetime
    last_seen_at: datetime

    @classmethod
    def of(cls, worker: LiveWorker, queues: list[str]) -> "WorkerView":
        return cls(
            id=worker.id,
            host=worker.host,
            pid=worker.pid,
            queues=queues,
            task_types=list(worker.task_types),
            concurrency=worker.concurrency,
            started_at=worker.started_at,
            last_seen_at=worker.last_seen_at,
        )


class WorkerList(msgspec.Struct, kw_only=True):
    workers: list[WorkerView]


class WorkersController(Controller):
    path = "/v1/workers"
    tags = ["queues"]  # noqa: RUF012 - Litestar reads class attributes

    @get(
        "/",
        operation_id="listWorkers",
        summary="List the live workers",
        description=(
            "Workers seen within the last 15 seconds (they beat every 5), oldest first. A key "
            "restricted to some queues sees only the workers serving one of them, and only "
            "those queues."
        ),
        responses=error_responses(401, 403, 503),
        **requires(Scope.JOBS_READ),
    )
    async def list_workers(
        self,
        ctx: NamedDependency[RequestContext],
    ) -> WorkerList:
        return WorkerList(workers=await worker_views(ctx))


async def worker_views(ctx: RequestContext) -> list[WorkerView]:
    """The live workers serving a queue the key may see, with those queues only (this route's
    and the web console's)."""
    views = []
    for worker in await ctx.services.fleet.live_workers():
        queues = [q for q in worker.queues if ctx.caller.allows_queue(q)]
        if queues:
            views.append(WorkerView.of(worker, queues))
    return views
