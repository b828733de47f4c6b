"""Reading jobs (``/v1``, scope ``jobs:read``): filtered pages of jobs, and one job whole, which
a client may wait on until it finishes; and deleting a finished job (``jobs:admin``), on the
same path.

A key restricted to some queues sees only their jobs: a listing without a queue filter is
limited to them, one naming another queue is refused (403), like reading a job of another
queue.
"""

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, delete, get
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.openapi.spec import Example
from litestar.params import Parameter, QueryParameter
from litestar.status_codes import HTTP_204_NO_CONTENT

from queue_api.auth import Caller, requires
from queue_api.context import RequestContext
from queue_api.job_views import JobPageView, JobSummaryView, JobView, job_view
from queue_api.job_waiter import MAX_WAIT_S, JobWaiter
from queue_api.schemas import error_responses
from queue_core.jobs import JobRecord
from queue_core.keys import Scope
from queue_core.listing import (
    DEFAULT_PAGE_SIZE,
    FILTER_TIME_MAX,
    FILTER_TIME_MIN,
    MAX_PAGE_SIZE,
    InvalidCursorError,
    JobFilter,
    JobPage,
    decode_cursor,
)
from queue_core.states import JobStatus

MAX_FILTER_VALUES = 100  # types or queues named in one listing
MAX_NAME_LENGTH = 255  # as stored (jobs.type, jobs.queue)
_ITS_QUEUE = "this job's queue"
_TIME_RANGE = "from 1970-01-01T00:00:00Z up to, not including, 2200-01-01T00:00:00Z"


@dataclass(frozen=True)
class _Source:
    """Where a filter came from, for the 400s that name its fields."""

    detail: str  # "Validation failed for GET /v1/jobs"
    source: str  # "query" or "body"

    def bad(self, key: str, message: str) -> ValidationException:
        return ValidationException(
            detail=self.detail, extra=[{"message": message, "key": key, "source": self.source}]
        )

    def names(self, key: str, values: list[str] | None) -> tuple[str, ...] | None:
        """Type or queue names as given: each 1..255 characters of text PostgreSQL can hold."""
        if values is None:
            return None
        if len(values) > MAX_FILTER_VALUES:
            raise self.bad(key, f"at most {MAX_FILTER_VALUES} values")
        for value in values:
            if not 1 <= len(value) <= MAX_NAME_LENGTH:
                raise self.bad(key, f"each value must be 1 to {MAX_NAME_LENGTH} characters")
            if "\x00" in value or any("\ud800" <= c <= "\udfff" for c in value):
                raise self.bad(key, "must not contain NUL characters or unpaired surrogates")
        return tuple(dict.fromkeys(values))

    def instant(self, key: str, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise self.bad(key, "must include a timezone offset, e.g. 'Z' or '+02:00'")
        if not FILTER_TIME_MIN <= value < FILTER_TIME_MAX:
            raise self.bad(key, f"must be {_TIME_RANGE}")
        return value


_QUERY = _Source("Validation failed for GET /v1/jobs", "query")


def source_of(detail: str, source: str) -> _Source:
    """A filter's origin (``detail`` of its 400s, ``source``: "query" or "body")."""
    return _Source(detail, source)


def job_filter(  # noqa: PLR0913 - one argument per filter
    caller: Caller,
    source: _Source,
    *,
    status: list[JobStatus] | None,
    types: list[str] | None,
    queues: list[str] | None,
    created_after: datetime | None,
    created_before: datetime | None,
    finished_after: datetime | None,
    finished_before: datetime | None,
) -> JobFilter:
    """The filter of a listing or a bulk action, checked: a 400 naming a bad field, a 403 for
    a queue the key may not use; a key restricted to queues is limited to them."""
    queue_names = source.names("queue", queues)
    if queue_names is not None:
        caller.check_queues(queue_names)
    elif caller.queues is not None:
        queue_names = tuple(sorted(caller.queues))
    return JobFilter(
        statuses=None if status is None else tuple(dict.fromkeys(status)),
        types=source.names("type", types),
        queues=queue_names,
        created_after=source.instant("created_after", created_after),
        created_before=source.instant("created_before", created_before),
        finished_after=source.instant("finished_after", finished_after),
        finished_before=source.instant("finished_before", finished_before),
    )


def _time(description: str) -> Any:  # noqa: ANN401 - Litestar's Parameter
    return Parameter(
        description=f"{description} (RFC 3339 with an offset, {_TIME_RANGE})",
        examples=[Example(value="2026-12-04T10:00:00Z")],
    )


JobId = Annotated[UUID, Parameter(description="The job's id, as returned by POST /jobs")]

_NOT_FINISHED = {409: "The job is pending or running: cancel it first"}


class JobListController(Controller):
    path = "/v1/jobs"
    tags = ["jobs"]  # noqa: RUF012 - Litestar reads class attributes

    @get(
        "/",
        operation_id="listJobs",
        summary="List jobs, newest first, by filters and pages",
        description=(
            "Every filter given must hold; a repeated filter matches any of its values "
            "(`?status=failed&status=cancelled`). Time ranges include their start and exclude "
            "their end. Pages follow `next_cursor` (null on the last page); a cursor is opaque "
            "and only valid with the same filters. A key restricted to some queues sees only "
            "their jobs."
        ),
        responses=error_responses(400, 401, 403, 503),
        **requires(Scope.JOBS_READ),
    )
    async def list_jobs(  # noqa: PLR0913 - one argument per query parameter
        self,
        *,
        ctx: NamedDependency[RequestContext],
        status: Annotated[
            list[JobStatus] | None,
            Parameter(description="Only jobs in these statuses", max_items=len(JobStatus)),
        ] = None,
        type_: Annotated[
            list[str] | None,
            QueryParameter(
                name="type",
                description="Only jobs of these types",
                examples=[Example(value="send_email")],
            ),
        ] = None,
        queue: Annotated[
            list[str] | None,
            Parameter(description="Only jobs of these queues", examples=[Example(value="default")]),
        ] = None,
        created_after: Annotated[datetime | None, _time("Created at or after")] = None,
        created_before: Annotated[datetime | None, _time("Created before")] = None,
        finished_after: Annotated[datetime | None, _time("Finished at or after")] = None,
        finished_before: Annotated[datetime | None, _time("Finished before")] = None,
        cursor: Annotated[
            str | None,
            Parameter(
                description="`next_cursor` of the previous page",
                max_length=64,
                examples=[Example(value="AZPhuLJqcxG8XYJ3CK6jQg")],
            ),
        ] = None,
        limit: Annotated[
            int, Parameter(ge=1, le=MAX_PAGE_SIZE, description="Jobs per page")
        ] = DEFAULT_PAGE_SIZE,
    ) -> JobPageView:
        where = job_filter(
            ctx.caller,
            _QUERY,
            status=status,
            types=type_,
            queues=queue,
            created_after=created_after,
            created_before=created_before,
            finished_after=finished_after,
            finished_before=finished_before,
        )
        page = await job_page(ctx, where, cursor=cursor, limit=limit)
        return JobPageView(
            jobs=[JobSummaryView.of(job) for job in page.jobs], next_cursor=page.next_cursor
        )

    @get(
        "/{job_id:str}",
        operation_id="getJob",
        summary="Read a job, every field; optionally wait for it to finish",
        description=(
            "With `wait`, a job that has not finished (completed, failed or cancelled) is "
            "answered once it finishes or after `wait` seconds, whichever comes first; 200 "
            "either way, with the job as it is then. When too many requests already wait on "
            "this API process, the job is answered at once."
        ),
        responses=error_responses(400, 401, 403, 404, 503),
        **requires(Scope.JOBS_READ),
    )
    async def get_job(
        self,
        *,
        request: Request[Any, Any, Any],
        job_id: JobId,
        ctx: NamedDependency[RequestContext],
        wait: Annotated[
            float | None,
            Parameter(
                gt=0,
                le=MAX_WAIT_S,
                description=f"Seconds to wait for the job to finish (at most {MAX_WAIT_S:g})",
                examples=[Example(value=30)],
            ),
        ] = None,
    ) -> JobView:
        job_queue, job_waiter = ctx.services.queue, ctx.services.waiter
        job = await read_job(ctx, job_id)
        if wait is None or job.status.is_final:
            return await job_view(job_queue, job)
        if await _wait_unless_gone(request, job_waiter, job_id, wait) is None:
            return await job_view(job_queue, job)
        return await job_view(job_queue, await job_queue.get(job_id))

    @delete(
        "/{job_id:str}",
        operation_id="deleteJob",
        summary="Delete a finished job",
        description=(
            "A completed, failed or cancelled job is deleted: 204. Pending or running: 409."
        ),
        status_code=HTTP_204_NO_CONTENT,
        responses=error_responses(400, 401, 403, 404, 409, 503, meanings=_NOT_FINISHED),
        **requires(Scope.JOBS_ADMIN),
    )
    async def delete_job(
        self,
        job_id: JobId,
        ctx: NamedDependency[RequestContext],
    ) -> None:
        await delete_job(ctx, job_id)


async def job_page(
    ctx: RequestContext, where: JobFilter, *, cursor: str | None, limit: int
) -> JobPage:
    """One page of a listing (this route's and the web console's); a 400 for a bad cursor."""
    try:
        after = None if cursor is None else decode_cursor(cursor)
    except InvalidCursorError as exc:
        raise _QUERY.bad("cursor", str(exc)) from None
    return await ctx.services.listing.page(where, after=after, limit=limit)


async def read_job(ctx: RequestContext, job_id: UUID) -> JobRecord:
    """A job whole, if the key may use its queue (404 for none, 403 for another queue)."""
    job = await ctx.services.queue.get(job_id)
    ctx.caller.check_queues([job.queue], what=_ITS_QUEUE)
    return job


async def delete_job(ctx: RequestContext, job_id: UUID) -> None:
    """Delete a finished job (this route's and the web console's); 409 unless finished."""
    job_queue, caller = ctx.services.queue, ctx.caller
    if caller.queues is not None:
        caller.check_queues([(await job_queue.get(job_id)).queue], what=_ITS_QUEUE)
    await job_queue.delete_finished(job_id)


async def _wait_unless_gone(
    request: Request[Any, Any, Any], waiter: JobWaiter, job_id: UUID, timeout_s: float
) -> bool | None:
    """Wait for the job, but no longer than the client stays: its leaving ends the wait (and
    frees the waiter's place) at once rather than at the timeout."""
    waiting = asyncio.ensure_future(waiter.wait(job_id, timeout_s))
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiting, gone):
            task.cancel()  # nothing for a finished task
        await asyncio.gather(waiting, gone, return_exceptions=True)
    if waiting.cancelled() or waiting.exception() is not None:
        return False
    return waiting.result()


async def _disconnected(request: Request[Any, Any, Any]) -> None:
    """Returns when the client has gone (ASGI's http.disconnect). A GET's body, if any, is read
    and dropped on the way."""
    try:
        while (await request.receive())["type"] != "http.disconnect":
            pass
    except Exception:  # noqa: BLE001, S110 - a broken receive means the client is gone too
        pass
