"""Enqueueing many jobs in one request (``/v1``)."""

from collections import Counter

from litestar import Controller, post
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.status_codes import HTTP_201_CREATED

from queue_api.metrics import JOBS_ENQUEUED
from queue_api.routes.jobs import strict_json_body
from queue_api.schemas import JobBatchCreate, JobBatchCreated, error_responses
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
        responses=error_responses(400, 413, 415, 503),
    )
    async def enqueue_batch(
        self, data: JSONBody[JobBatchCreate], job_queue: NamedDependency[Queue]
    ) -> JobBatchCreated:
        ids = await job_queue.enqueue_many([job.to_new_job() for job in data.jobs])
        for (job_type, queue), count in Counter((j.type, j.queue) for j in data.jobs).items():
            JOBS_ENQUEUED.labels(type=job_type, queue=queue).inc(count)
        return JobBatchCreated(ids=ids)
