"""The console's pages (scope ``jobs:read``): the overview, the jobs list, one job, and the
confirmation of a bulk action. Each reads through the functions the JSON routes use
(``queue_api.routes``), so the console shows what the API answers and nothing else.

Live parts (the overview's tables, the first page of jobs) are fragments of their own that the
page reloads every :data:`POLL_S` seconds while the tab is visible (``static/ui.js``): one
request per open tab per period, reading the same bounded queries as a page load.
"""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final
from uuid import UUID

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import Parameter
from litestar.response import Template

from queue_api.auth import requires_session
from queue_api.context import RequestContext
from queue_api.job_views import JobSummaryView, job_view
from queue_api.routes.job_list import job_page, read_job
from queue_api.routes.queues import queue_views
from queue_api.routes.schedules import schedule_views
from queue_api.routes.workers import worker_views
from queue_api.ui.filters import FilterForm
from queue_api.ui.rendering import page
from queue_core.keys import Scope
from queue_core.states import JobStatus

POLL_S: Final = 3
PAGE_SIZE: Final = 50
RATE_WINDOW: Final = timedelta(minutes=5)
BULK_DEFAULT_LIMIT: Final = 1000
BULK_MAX_LIMIT: Final = 10_000
_FILTER_FIELDS: Final = ("status", "type", "queue", "created_after", "created_before")

JobId = Annotated[UUID, Parameter(description="The job's id")]


def _filter_fields(request: Request[Any, Any, Any]) -> dict[str, list[str]]:
    params = request.query_params
    return {name: params.getall(name) for name in _FILTER_FIELDS if name in params}


async def _overview_context(ctx: RequestContext) -> dict[str, Any]:
    queues = await queue_views(ctx)
    recent, capped = await ctx.services.listing.recent_by_queue(datetime.now(UTC) - RATE_WINDOW)
    minutes = RATE_WINDOW.total_seconds() / 60
    rates = {
        r.queue: {
            "created": r.created / minutes,
            "completed": r.completed / minutes,
            "failed": r.failed / minutes,
        }
        for r in recent
        if ctx.caller.allows_queue(r.queue)
    }
    return {
        "queues": queues,
        "rates": rates,
        "rates_capped": capped,
        "rate_minutes": int(minutes),
        "workers": await worker_views(ctx),
        "schedules": await schedule_views(ctx),
        "now": datetime.now(UTC),
        "poll_s": POLL_S,
    }


async def _jobs_context(request: Request[Any, Any, Any], ctx: RequestContext) -> dict[str, Any]:
    form = FilterForm.read(_filter_fields(request))
    cursor = request.query_params.get("cursor") or None
    jobs_page = await job_page(ctx, form.job_filter(ctx.caller), cursor=cursor, limit=PAGE_SIZE)
    return {
        "form": form,
        "statuses": [s.value for s in JobStatus],
        "jobs": [JobSummaryView.of(job) for job in jobs_page.jobs],
        "next_cursor": jobs_page.next_cursor,
        "cursor": cursor,
        "query": form.query(),
        "poll_s": POLL_S,
    }


class ConsolePages(Controller):
    path = "/"

    @get("/", **requires_session(Scope.JOBS_READ))
    async def overview(
        self, request: Request[Any, Any, Any], ctx: NamedDependency[RequestContext]
    ) -> Template:
        return page(request, "overview.html", **await _overview_context(ctx))

    @get("/fragments/overview", **requires_session(Scope.JOBS_READ))
    async def overview_fragment(
        self, request: Request[Any, Any, Any], ctx: NamedDependency[RequestContext]
    ) -> Template:
        return page(request, "overview_live.html", **await _overview_context(ctx))

    @get("/jobs", **requires_session(Scope.JOBS_READ))
    async def jobs(
        self, request: Request[Any, Any, Any], ctx: NamedDependency[RequestContext]
    ) -> Template:
        return page(request, "jobs.html", **await _jobs_context(request, ctx))

    @get("/fragments/jobs", **requires_session(Scope.JOBS_READ))
    async def jobs_fragment(
        self, request: Request[Any, Any, Any], ctx: NamedDependency[RequestContext]
    ) -> Template:
        return page(request, "jobs_table.html", **await _jobs_context(request, ctx))

    @get("/jobs/{job_id:uuid}", **requires_session(Scope.JOBS_READ))
    async def job(
        self, request: Request[Any, Any, Any], job_id: JobId, ctx: NamedDependency[RequestContext]
    ) -> Template:
        job = await job_view(ctx.services.queue, await read_job(ctx, job_id))
        timeline = [
            (label, at)
            for label, at in (
                ("Created", job.created_at),
                ("Scheduled for", job.scheduled_at),
                ("Started (latest attempt)", job.started_at),
                ("Cancel requested", job.cancel_requested_at),
                ("Finished", job.finished_at),
            )
            if at is not None
        ]
        timeline.sort(key=lambda item: item[1])
        return page(
            request,
            "job.html",
            job=job,
            timeline=timeline,
            final=job.status in {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED},
        )

    @get("/bulk", **requires_session(Scope.JOBS_ADMIN))
    async def bulk_confirm(
        self, request: Request[Any, Any, Any], ctx: NamedDependency[RequestContext]
    ) -> Template:
        form = FilterForm.read(_filter_fields(request))
        form.job_filter(ctx.caller)  # a bad filter is refused here, before the confirmation
        action = request.query_params.get("action")
        return page(
            request,
            "bulk.html",
            form=form,
            action="cancel" if action == "cancel" else "retry",
            limit=BULK_DEFAULT_LIMIT,
            max_limit=BULK_MAX_LIMIT,
        )
