"""The seed's job endpoints: enqueue a job, read its status."""

from typing import Annotated
from uuid import UUID

from litestar import Controller, get, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import JSONBody, Parameter
from litestar.response import Response
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from queue_api.auth import requires
from queue_api.context import RequestContext
from queue_api.enqueue_fast_path import enqueue_fast_path
from queue_api.enqueueing import (
    OUTCOME_HEADERS,
    UNPROCESSABLE,
    IdempotencyKeyHeader,
    enqueue_one,
    outcome_headers,
)
from queue_api.openapi_document import NEW_JOB_LINKS, linked_operation
from queue_api.schemas import JobCreate, JobCreated, JobStatusResponse, error_responses
from queue_core.jobs import EnqueueOutcome
from queue_core.keys import Scope

# A job's queue is not named to a key that may not use it. 403, not 404: the caller already
# holds the job's id, which it cannot have guessed (UUIDv7, 74 random bits).
_ITS_QUEUE = "this job's queue"


class JobsController(Controller):
    path = "/jobs"
    tags = ["jobs"]  # noqa: RUF012 - Litestar reads class attributes

    @post(
        "/",
        operation_id="enqueueJob",
        summary="Enqueue a job",
        status_code=HTTP_201_CREATED,
        # Serves the route: the strict body check, the header's, then this handler's function
        # (see the module for why).
        middleware=[enqueue_fast_path],
        responses={
            HTTP_200_OK: ResponseSpec(
                data_container=JobCreated,
                description=(
                    "Not new: the job an earlier request with this Idempotency-Key made, or the "
                    "one holding this unique_key (see the headers)"
                ),
                generate_examples=False,
            ),
            **error_responses(400, 401, 403, 408, 413, 415, 422, 503, meanings=UNPROCESSABLE),
        },
        operation_class=linked_operation(HTTP_201_CREATED, NEW_JOB_LINKS),
        response_headers=[
            ResponseHeader(
                name="Location",
                description="Where to read the job's status",
                documentation_only=True,
            ),
            *OUTCOME_HEADERS,
        ],
        **requires(Scope.JOBS_WRITE),
    )
    async def enqueue(
        self,
        *,
        data: JSONBody[JobCreate],
        ctx: NamedDependency[RequestContext],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[JobCreated]:
        enqueued, _ = await enqueue_one(ctx, data, idempotency_key, read_back=False)
        created = enqueued.outcome is EnqueueOutcome.CREATED
        return Response(
            JobCreated.for_job(enqueued.id),
            status_code=HTTP_201_CREATED if created else HTTP_200_OK,
            headers={
                "Location": f"/jobs/status?id={enqueued.id}",
                **outcome_headers(enqueued.outcome),
            },
        )

    @get(
        "/status",
        operation_id="getJobStatus",
        summary="Read a job's status and details",
        responses=error_responses(400, 401, 403, 404, 503),
        **requires(Scope.JOBS_READ),
    )
    async def status(
        self,
        ctx: NamedDependency[RequestContext],
        id: Annotated[  # noqa: A002 - the seed's query parameter is called id
            UUID,
            Parameter(
                description="The job's id, as returned by POST /jobs",
                examples=[Example(value="a1b2c3d4-e5f6-7890-1234-567890abcdef")],
            ),
        ],
    ) -> JobStatusResponse:
        job = await ctx.services.queue.get(id)
        ctx.caller.check_queues([job.queue], what=_ITS_QUEUE)
        return JobStatusResponse.of(job)
