"""Enqueueing many jobs in one request (``/v1``)."""

from litestar import Controller, post
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.status_codes import HTTP_201_CREATED

from queue_api.auth import Caller, requires
from queue_api.json_body import strict_json_body
from queue_api.metrics import count_enqueued
from queue_api.openapi_document import NEW_BATCH_LINKS, linked_operation
from queue_api.rate_limit import RateLimiter
from queue_api.schemas import JobBatchCreate, JobBatchCreated, error_responses
from queue_core.keys import Scope
from queue_core.queue import Queue


class JobBatchesController(Controller):
    path = "/v1/jobs/batch"
    tags = ["jobs"]  # noqa: RUF012 - Litestar reads class attributes

    @post(
        "/",
        operation_id="enqueueJobBatch",
        summary="Enqueue up to 1,000 jobs at once",
        description=(
            "Every job is validated as in POST /jobs; the batch is stored in one statement, all "
            "or nothing. The ids come back in request order."
        ),
        status_code=HTTP_201_CREATED,
        before_request=strict_json_body(JobBatchCreate),
        responses=error_responses(400, 401, 403, 408, 413, 415, 503),
        operation_class=linked_operation(HTTP_201_CREATED, NEW_BATCH_LINKS),
        **requires(Scope.JOBS_WRITE),
    )
    async def enqueue_batch(
        self,
        data: JSONBody[JobBatchCreate],
        job_queue: NamedDependency[Queue],
        caller: NamedDependency[Caller],
        rate_limiter: NamedDependency[RateLimiter],
    ) -> JobBatchCreated:
        caller.check_queues(job.queue for job in data.jobs)  # all or nothing, like the insert
        await rate_limiter.admit_jobs(caller.key, len(data.jobs))
        ids = await job_queue.enqueue_many([job.to_new_job() for job in data.jobs])
        count_enqueued(data.jobs)
        return JobBatchCreated(ids=ids)
