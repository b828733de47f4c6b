"""The seed's job endpoints: enqueue a job, read its status."""

from typing import Annotated
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.datastructures import ResponseHeader
from litestar.exceptions import HTTPException
from litestar.openapi.spec import Example
from litestar.params import Parameter
from litestar.response import Response
from litestar.status_codes import HTTP_201_CREATED, HTTP_415_UNSUPPORTED_MEDIA_TYPE

from queue_api.schemas import JobCreate, JobCreated, JobStatusResponse
from queue_core.jobs import NewJob
from queue_core.queue import Queue


def _require_json(request: Request) -> None:  # type: ignore[type-arg]
    media_type, _ = request.content_type
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise HTTPException(
            status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail=f"Content-Type must be application/json, got {media_type or 'none'!r}",
        )


class JobsController(Controller):
    path = "/jobs"
    tags = ["jobs"]  # noqa: RUF012 - Litestar reads class attributes

    @post(
        "/",
        operation_id="enqueueJob",
        summary="Enqueue a job",
        status_code=HTTP_201_CREATED,
        before_request=_require_json,
        response_headers=[
            ResponseHeader(
                name="Location",
                description="Where to read the job's status",
                documentation_only=True,
            )
        ],
    )
    async def enqueue(self, data: JobCreate, queue: Queue) -> Response[JobCreated]:
        job_id = await queue.enqueue(
            NewJob(
                type=data.type,
                payload=data.payload,
                queue=data.queue,
                priority=data.priority,
                max_attempts=data.max_attempts,
                scheduled_at=data.scheduled_at,
                timeout_s=data.timeout_s,
            )
        )
        return Response(
            JobCreated.for_job(job_id),
            status_code=HTTP_201_CREATED,
            headers={"Location": f"/jobs/status?id={job_id}"},
        )

    @get(
        "/status",
        operation_id="getJobStatus",
        summary="Read a job's status and details",
        raises=[],
    )
    async def status(
        self,
        queue: Queue,
        id: Annotated[  # noqa: A002 - the seed's query parameter is called id
            UUID,
            Parameter(
                description="The job's id, as returned by POST /jobs",
                examples=[Example(value="a1b2c3d4-e5f6-7890-1234-567890abcdef")],
            ),
        ],
    ) -> JobStatusResponse:
        return JobStatusResponse.of(await queue.get(id))
