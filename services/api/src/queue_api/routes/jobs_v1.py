"""Enqueueing one job (``/v1``): every option, and the whole job back.

A plain route handler, not a Controller: GET /v1/jobs (routes/job_list.py) is a Controller on
the same path, and Litestar 2 cannot merge two Controllers on one path (each brings its own
OPTIONS handler). Register it after that Controller, which the app does."""

from litestar import post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Link
from litestar.params import JSONBody
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
from queue_api.job_views import JobView, job_view
from queue_api.openapi_document import linked_operation
from queue_api.schemas import JobCreate, error_responses
from queue_core.jobs import EnqueueOutcome
from queue_core.keys import Scope

_NEW_JOB_ID = "$response.body#/id"
NEW_V1_JOB_LINKS = {
    "GetJob": Link(operation_id="getJob", parameters={"job_id": _NEW_JOB_ID}),
    "CancelJob": Link(operation_id="cancelJob", parameters={"job_id": _NEW_JOB_ID}),
    "RetryJob": Link(operation_id="retryJob", parameters={"job_id": _NEW_JOB_ID}),
}


@post(
    "/v1/jobs",
    operation_id="createJob",
    tags=["jobs"],
    summary="Enqueue a job and get it back whole",
    description=(
        "The body is POST /jobs's, with unique_key and unique_for_s. 201 with the new job "
        "(the shape of GET /v1/jobs/{id}). 200 with an existing job when this is a retry "
        "with the same Idempotency-Key and job (Idempotent-Replayed: true), or when another "
        "job holds the unique_key (X-Job-Duplicate: true), if this key may read that job "
        "(jobs:read and its queue; else 409 naming its id). The same Idempotency-Key with a "
        "different job: 422."
    ),
    status_code=HTTP_201_CREATED,
    middleware=[enqueue_fast_path],  # serves the route, as POST /jobs's (see it)
    responses={
        HTTP_200_OK: ResponseSpec(
            data_container=JobView,
            description=(
                "Not new: the job an earlier request with this Idempotency-Key made, or the "
                "one holding this unique_key (see the headers)"
            ),
            generate_examples=False,
        ),
        **error_responses(
            400,
            401,
            403,
            408,
            409,
            413,
            415,
            422,
            503,
            meanings={
                **UNPROCESSABLE,
                409: (
                    "Another job holds this unique_key and this key may not read it (jobs:read "
                    "and the job's queue): the detail names its id, nothing was enqueued"
                ),
            },
        ),
    },
    operation_class=linked_operation(HTTP_201_CREATED, NEW_V1_JOB_LINKS),
    response_headers=[
        ResponseHeader(
            name="Location", description="Where to read the job", documentation_only=True
        ),
        *OUTCOME_HEADERS,
    ],
    **requires(Scope.JOBS_WRITE),
)
async def create_job(
    *,
    data: JSONBody[JobCreate],
    ctx: NamedDependency[RequestContext],
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response[JobView]:
    enqueued, record = await enqueue_one(ctx, data, idempotency_key, read_back=True)
    assert record is not None  # noqa: S101 - read_back=True
    created = enqueued.outcome is EnqueueOutcome.CREATED
    return Response(
        await job_view(ctx.services.queue, record),
        status_code=HTTP_201_CREATED if created else HTTP_200_OK,
        headers={"Location": f"/v1/jobs/{record.id}", **outcome_headers(enqueued.outcome)},
    )
