"""The console's actions: plain HTML forms (they work without JavaScript), each checked for its
CSRF token by the session check (``queue_api.ui.sessions``) and for its scope like the JSON
route it mirrors, then done by the same function that route calls. Each answers 303 to the page
that shows the outcome (post/redirect/get: reloading it repeats nothing)."""

from typing import Annotated, Any, Final
from urllib.parse import urlencode
from uuid import UUID

from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.params import Parameter
from litestar.response import Redirect
from litestar.status_codes import HTTP_303_SEE_OTHER

from queue_api.auth import requires_session
from queue_api.context import RequestContext
from queue_api.routes.job_actions import cancel_job, retry_job
from queue_api.routes.job_list import delete_job
from queue_api.routes.queues import MAX_QUEUE_NAME_LENGTH, set_queue_paused
from queue_api.ui.filters import FilterForm
from queue_api.ui.pages import BULK_MAX_LIMIT
from queue_api.ui.rendering import notice_query
from queue_core.bulk import MAX_BULK_SCAN, cancel_matching_step, retry_matching_step
from queue_core.keys import Scope

JobId = Annotated[UUID, Parameter(description="The job's id")]
_FILTER_FIELDS: Final = ("status", "type", "queue", "created_after", "created_before")


def _see(request: Request[Any, Any, Any], path: str, *, done: str, query: str = "") -> Redirect:
    """303 to the console's ``path`` (with ``query``, already encoded), which shows ``done``
    (to this session only)."""
    notice = urlencode(notice_query(request, done))
    target = f"/ui{path}?" + (f"{query}&{notice}" if query else notice)
    return Redirect(target, status_code=HTTP_303_SEE_OTHER)


async def _field(request: Request[Any, Any, Any], name: str, *, max_chars: int) -> str:
    value = (await request.form()).get(name)
    if not isinstance(value, str) or not value.strip():
        raise ValidationException(detail=f"the form field {name!r} is required")
    if len(value) > max_chars:
        raise ValidationException(detail=f"the form field {name!r} is too long")
    return value


class ConsoleActions(Controller):
    path = "/"

    @post("/jobs/{job_id:uuid}/retry", **requires_session(Scope.JOBS_ADMIN))
    async def retry(
        self, request: Request[Any, Any, Any], job_id: JobId, ctx: NamedDependency[RequestContext]
    ) -> Redirect:
        await retry_job(ctx, job_id)
        return _see(request, f"/jobs/{job_id}", done="retried")

    @post("/jobs/{job_id:uuid}/cancel", **requires_session(Scope.JOBS_ADMIN))
    async def cancel(
        self, request: Request[Any, Any, Any], job_id: JobId, ctx: NamedDependency[RequestContext]
    ) -> Redirect:
        await cancel_job(ctx, job_id)
        return _see(request, f"/jobs/{job_id}", done="cancelled")

    @post("/jobs/{job_id:uuid}/delete", **requires_session(Scope.JOBS_ADMIN))
    async def delete(
        self, request: Request[Any, Any, Any], job_id: JobId, ctx: NamedDependency[RequestContext]
    ) -> Redirect:
        await delete_job(ctx, job_id)
        return _see(request, "/jobs", done="deleted")

    @post("/bulk", **requires_session(Scope.JOBS_ADMIN))
    async def bulk(
        self, request: Request[Any, Any, Any], ctx: NamedDependency[RequestContext]
    ) -> Redirect:
        form_data = await request.form()
        form = FilterForm.read(
            {name: form_data.getall(name) for name in _FILTER_FIELDS if name in form_data}
        )
        where = form.job_filter(ctx.caller)
        action = await _field(request, "action", max_chars=10)
        limit_text = await _field(request, "limit", max_chars=6)
        # ASCII: "²" and "١٢" are digits to str.isdigit(), and int() refuses the first.
        if not (limit_text.isascii() and limit_text.isdigit()) or not (
            1 <= int(limit_text) <= BULK_MAX_LIMIT
        ):
            raise ValidationException(detail=f"the limit must be 1 to {BULK_MAX_LIMIT}")
        limit = int(limit_text)
        services = ctx.services
        if action == "retry":
            step = await retry_matching_step(services.queue, services.listing, where, limit=limit)
        elif action == "cancel":
            step = await cancel_matching_step(services.queue, services.listing, where, limit=limit)
        else:
            raise ValidationException(detail="the action must be retry or cancel")
        done = f"{action}:{step.affected}"
        if step.bounded:
            # The walk stopped at its bound, not at the limit: pressing again would walk the
            # same newest jobs again, so the notice says how to reach older ones.
            done += (
                f" (stopped after reading {MAX_BULK_SCAN:,} jobs: narrow the filter, by time "
                "say, to reach older ones)"
            )
        return _see(request, "/jobs", done=done, query=form.query())

    @post("/queues/pause", **requires_session(Scope.QUEUES_ADMIN))
    async def pause(
        self, request: Request[Any, Any, Any], ctx: NamedDependency[RequestContext]
    ) -> Redirect:
        name = await _field(request, "name", max_chars=MAX_QUEUE_NAME_LENGTH)
        await set_queue_paused(ctx, name, paused=True)
        return _see(request, "/", done=f"paused:{name}")

    @post("/queues/resume", **requires_session(Scope.QUEUES_ADMIN))
    async def resume(
        self, request: Request[Any, Any, Any], ctx: NamedDependency[RequestContext]
    ) -> Redirect:
        name = await _field(request, "name", max_chars=MAX_QUEUE_NAME_LENGTH)
        await set_queue_paused(ctx, name, paused=False)
        return _see(request, "/", done=f"resumed:{name}")
