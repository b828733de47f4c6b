"""Acting on one job: cancel it, or run a failed or cancelled one again (``/v1``)."""

from typing import Annotated
from uuid import UUID

from litestar import Controller, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter
from litestar.response import Response
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from queue_api.auth import Caller, requires
from queue_api.context import RequestContext
from queue_api.schemas import JobStatusResponse, error_responses
from queue_core.jobs import JobRecord, Transition
from queue_core.keys import Scope
from queue_core.queue import Queue
from queue_core.states import JobStatus

JobId = Annotated[UUID, Parameter(description="The job's id, as returned by POST /jobs")]


async def _check_queue(job_queue: Queue, caller: Caller, job_id: UUID) -> None:
    """403 unless the key may use the job's queue (404 for no job). A job never changes queue,
    so reading it first leaves no window for the action to reach another queue's job."""
    if caller.queues is not None:
        caller.check_queues([(await job_queue.get(job_id)).queue], what="this job's queue")


async def cancel_job(ctx: RequestContext, job_id: UUID) -> tuple[JobRecord, Transition]:
    """Cancel a job (this route's and the web console's): the job after, and what changed."""
    job_queue = ctx.services.queue
    await _check_queue(job_queue, ctx.caller, job_id)
    transition = await job_queue.cancel(job_id)
    return await job_queue.get(job_id), transition


async def retry_job(ctx: RequestContext, job_id: UUID) -> JobRecord:
    """Run a failed or cancelled job again (this route's and the web console's)."""
    job_queue = ctx.services.queue
    await _check_queue(job_queue, ctx.caller, job_id)
    await job_queue.retry(job_id)
    return await job_queue.get(job_id)


class JobActionsController(Controller):
    path = "/v1/jobs/{job_id:str}"
    tags = ["jobs"]  # noqa: RUF012 - Litestar reads class attributes

    @post(
        "/cancel",
        operation_id="cancelJob",
        summary="Cancel a job",
        description=(
            "A pending (or scheduled) job is cancelled at once: 200. A running job is asked to "
            "stop; its worker cancels it within one heartbeat: 202, and its status turns to "
            "cancelled then. A finished job cannot be cancelled: 409."
        ),
        status_code=HTTP_200_OK,
        responses={
            HTTP_202_ACCEPTED: ResponseSpec(
                data_container=JobStatusResponse,
                description="Running: its worker was asked to stop it (Status still running)",
                generate_examples=False,
            ),
            **error_responses(400, 401, 403, 404, 409, 503),
        },
        **requires(Scope.JOBS_ADMIN),
    )
    async def cancel(
        self,
        job_id: JobId,
        ctx: NamedDependency[RequestContext],
    ) -> Response[JobStatusResponse]:
        job, transition = await cancel_job(ctx, job_id)
        status = HTTP_202_ACCEPTED if transition.after is JobStatus.RUNNING else HTTP_200_OK
        return Response(JobStatusResponse.of(job), status_code=status)

    @post(
        "/retry",
        operation_id="retryJob",
        summary="Run a failed or cancelled job again",
        description=(
            "The job goes back to pending, due now, with a fresh attempt budget: Attempts "
            "restarts at 0 and it may run up to MaxAttempts times again. ErrorMessage keeps the "
            "last error until the next outcome. Any other status: 409; so is a job that "
            "waits for a dependency that failed for good or was cancelled (retry that one "
            "first), or was deleted."
        ),
        status_code=HTTP_200_OK,
        responses=error_responses(400, 401, 403, 404, 409, 503),
        **requires(Scope.JOBS_ADMIN),
    )
    async def retry(
        self,
        job_id: JobId,
        ctx: NamedDependency[RequestContext],
    ) -> JobStatusResponse:
        return JobStatusResponse.of(await retry_job(ctx, job_id))
