"""Acting on jobs in bulk (``/v1``, scope ``jobs:admin``): cancel or retry every job a filter
matches (``queue_core.bulk``: batches of 500, the single cancel's and retry's own statements),
a bounded walk at a time, continued by a cursor as GET /v1/jobs's pages are.
Deleting one job is in ``job_list``, beside reading it (one controller per path)."""

from uuid import UUID

from litestar import Controller, post
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK

from queue_api.auth import Caller, requires
from queue_api.context import RequestContext
from queue_api.job_views import JobBulkAction, JobBulkResult
from queue_api.json_body import strict_json_body
from queue_api.routes.job_list import job_filter, source_of
from queue_api.schemas import error_responses
from queue_core.bulk import MAX_BULK_SCAN, BulkStep, cancel_matching_step, retry_matching_step
from queue_core.keys import Scope
from queue_core.listing import JobFilter, decode_cursor


def _result(step: BulkStep) -> JobBulkResult:
    return JobBulkResult(affected=step.affected, next_cursor=step.next_cursor)


def _after(data: JobBulkAction) -> UUID | None:
    """Where the walk starts: the cursor's id (checked by JobBulkAction.problems)."""
    return None if data.cursor is None else decode_cursor(data.cursor)


def _filter(caller: Caller, data: JobBulkAction, action: str) -> JobFilter:
    return job_filter(
        caller,
        source_of(f"Validation failed for POST /v1/jobs/{action}", "body"),
        status=data.status,
        types=data.type,
        queues=data.queue,
        created_after=data.created_after,
        created_before=data.created_before,
        finished_after=data.finished_after,
        finished_before=data.finished_before,
    )


class JobAdminController(Controller):
    path = "/v1/jobs"
    tags = ["jobs"]  # noqa: RUF012 - Litestar reads class attributes

    @post(
        "/cancel",
        operation_id="cancelJobs",
        summary="Cancel every job a filter matches",
        description=(
            "Pending jobs matching the filter are cancelled, running ones asked to stop (as "
            "POST /v1/jobs/{id}/cancel does), up to `limit`, newest first, 500 per "
            f"transaction, reading at most {MAX_BULK_SCAN:,} jobs to find them. Answers how "
            "many, and `next_cursor` unless every matching job was walked: send it back as "
            "`cursor` to go on."
        ),
        status_code=HTTP_200_OK,
        before_request=strict_json_body(JobBulkAction),
        responses=error_responses(400, 401, 403, 408, 413, 415, 503),
        **requires(Scope.JOBS_ADMIN),
    )
    async def cancel_jobs(
        self,
        data: JSONBody[JobBulkAction],
        ctx: NamedDependency[RequestContext],
    ) -> JobBulkResult:
        job_queue, job_listing, caller = ctx.services.queue, ctx.services.listing, ctx.caller
        where = _filter(caller, data, "cancel")
        step = await cancel_matching_step(
            job_queue, job_listing, where, limit=data.limit, after=_after(data)
        )
        return _result(step)

    @post(
        "/retry",
        operation_id="retryJobs",
        summary="Run again every failed or cancelled job a filter matches",
        description=(
            "Failed and cancelled jobs matching the filter go back to pending with a fresh "
            "attempt budget (as POST /v1/jobs/{id}/retry does), up to `limit`, newest first, "
            f"500 per transaction, reading at most {MAX_BULK_SCAN:,} jobs to find them. A job "
            "whose unique key another job holds is skipped. Answers how many, and "
            "`next_cursor` unless every matching job was walked: send it back as `cursor` to "
            "go on."
        ),
        status_code=HTTP_200_OK,
        before_request=strict_json_body(JobBulkAction),
        responses=error_responses(400, 401, 403, 408, 413, 415, 503),
        **requires(Scope.JOBS_ADMIN),
    )
    async def retry_jobs(
        self,
        data: JSONBody[JobBulkAction],
        ctx: NamedDependency[RequestContext],
    ) -> JobBulkResult:
        job_queue, job_listing, caller = ctx.services.queue, ctx.services.listing, ctx.caller
        where = _filter(caller, data, "retry")
        step = await retry_matching_step(
            job_queue, job_listing, where, limit=data.limit, after=_after(data)
        )
        return _result(step)
