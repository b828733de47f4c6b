"""Enqueueing many jobs in one request (``/v1``)."""

from litestar import Controller, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody
from litestar.response import Response
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from queue_api.auth import requires
from queue_api.context import RequestContext
from queue_api.enqueueing import UNPROCESSABLE, check_dependencies_usable, idempotency
from queue_api.json_body import strict_json_body
from queue_api.metrics import count_enqueued
from queue_api.openapi_document import NEW_BATCH_LINKS, linked_operation
from queue_api.schemas import JobBatchCreate, JobBatchCreated, error_responses
from queue_core.jobs import EnqueueOutcome
from queue_core.keys import Scope


class JobBatchesController(Controller):
    path = "/v1/jobs/batch"
    tags = ["jobs"]  # noqa: RUF012 - Litestar reads class attributes

    @post(
        "/",
        operation_id="enqueueJobBatch",
        summary="Enqueue up to 1,000 jobs at once",
        description=(
            "Every job is validated as in POST /jobs; the batch is stored in one statement, all "
            "or nothing (with keys: one transaction). The ids come back in request order, each "
            "with its outcome: created, replayed (an earlier request's job for this item's "
            "idempotency_key) or duplicate (the job holding its unique_key). 201 when a job "
            "was created, else 200. An idempotency_key used before with a different job: 422, "
            "and nothing is stored."
        ),
        status_code=HTTP_201_CREATED,
        before_request=strict_json_body(JobBatchCreate),
        responses={
            HTTP_200_OK: ResponseSpec(
                data_container=JobBatchCreated,
                description="No job was new: each was replayed or a duplicate (see outcomes)",
                generate_examples=False,
            ),
            **error_responses(400, 401, 403, 408, 413, 415, 422, 503, meanings=UNPROCESSABLE),
        },
        operation_class=linked_operation(HTTP_201_CREATED, NEW_BATCH_LINKS),
        **requires(Scope.JOBS_WRITE),
    )
    async def enqueue_batch(
        self, *, data: JSONBody[JobBatchCreate], ctx: NamedDependency[RequestContext]
    ) -> Response[JobBatchCreated]:
        caller, services = ctx.caller, ctx.services
        caller.check_queues(job.queue for job in data.jobs)  # all or nothing, like the insert
        await check_dependencies_usable(ctx, data.jobs)
        await services.worker_directory.check((job.type, job.queue) for job in data.jobs)
        await services.rate_limiter.admit_jobs(caller.key, len(data.jobs))
        ttl_s = services.idempotency_ttl_s
        jobs = [
            job.to_new_job(idempotency(caller, job.idempotency_key, job, ttl_s))
            for job in data.jobs
        ]
        enqueued = await services.queue.enqueue_batch(jobs)
        created = [e.outcome is EnqueueOutcome.CREATED for e in enqueued]
        count_enqueued(job for job, new in zip(data.jobs, created, strict=True) if new)
        return Response(
            JobBatchCreated(ids=[e.id for e in enqueued], outcomes=[e.outcome for e in enqueued]),
            status_code=HTTP_201_CREATED if any(created) else HTTP_200_OK,
        )
