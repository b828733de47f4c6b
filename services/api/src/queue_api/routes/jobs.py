"""The seed's job endpoints: enqueue a job, read its status."""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.spec import Example
from litestar.params import JSONBody, Parameter
from litestar.response import Response
from litestar.status_codes import HTTP_201_CREATED, HTTP_415_UNSUPPORTED_MEDIA_TYPE

from queue_api.metrics import JOBS_ENQUEUED
from queue_api.schemas import (
    JobBatchCreate,
    JobCreate,
    JobCreated,
    JobStatusResponse,
    error_responses,
)
from queue_core.queue import Queue

_STRICT_DECODERS: dict[type, msgspec.json.Decoder[Any]] = {
    JobCreate: msgspec.json.Decoder(JobCreate, strict=True),
    JobBatchCreate: msgspec.json.Decoder(JobBatchCreate, strict=True),
}


def _validation_error(request: Request, message: str) -> ValidationException:  # type: ignore[type-arg]
    """A 400 in Litestar's own shape, naming the field (``$.type`` → ``type``)."""
    text, _, path = message.partition(" - at `$.")
    return ValidationException(
        detail=f"Validation failed for {request.method} {request.url.path}",
        extra=[{"message": text, "key": path.rstrip("`") or "data", "source": "body"}],
    )


def strict_json_body(body_type: type) -> Callable[[Request], Awaitable[None]]:  # type: ignore[type-arg]
    """A before_request hook that decodes the body as ``body_type`` strictly, refusing what
    Litestar's lenient conversion would let through: a non-JSON content type, an empty body,
    invalid UTF-8, and values of the wrong JSON type ("5" for an integer)."""
    decoder = _STRICT_DECODERS[body_type]

    async def check(request: Request) -> None:  # type: ignore[type-arg]
        await _check_body(request, decoder)

    return check


async def _check_body(request: Request, decoder: msgspec.json.Decoder[Any]) -> None:  # type: ignore[type-arg]
    media_type, _ = request.content_type
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise HTTPException(
            status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail=f"Content-Type must be application/json, got {media_type or 'none'!r}",
        )
    body = await request.body()
    if not body.strip():
        raise HTTPException(status_code=400, detail="Request body is empty: expected a JSON object")
    try:
        decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise _validation_error(request, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise HTTPException(status_code=400, detail=f"JSON is malformed: {exc}") from None
    except UnicodeDecodeError:
        raise HTTPException(status_code=400, detail="Request body is not valid UTF-8") from None


class JobsController(Controller):
    path = "/jobs"
    tags = ["jobs"]  # noqa: RUF012 - Litestar reads class attributes

    @post(
        "/",
        operation_id="enqueueJob",
        summary="Enqueue a job",
        status_code=HTTP_201_CREATED,
        before_request=strict_json_body(JobCreate),
        responses=error_responses(400, 413, 415, 503),
        response_headers=[
            ResponseHeader(
                name="Location",
                description="Where to read the job's status",
                documentation_only=True,
            )
        ],
    )
    async def enqueue(
        self, data: JSONBody[JobCreate], job_queue: NamedDependency[Queue]
    ) -> Response[JobCreated]:
        job_id = await job_queue.enqueue(data.to_new_job())
        JOBS_ENQUEUED.labels(type=data.type, queue=data.queue).inc()
        return Response(
            JobCreated.for_job(job_id),
            status_code=HTTP_201_CREATED,
            headers={"Location": f"/jobs/status?id={job_id}"},
        )

    @get(
        "/status",
        operation_id="getJobStatus",
        summary="Read a job's status and details",
        responses=error_responses(400, 404, 503),
    )
    async def status(
        self,
        job_queue: NamedDependency[Queue],
        id: Annotated[  # noqa: A002 - the seed's query parameter is called id
            UUID,
            Parameter(
                description="The job's id, as returned by POST /jobs",
                examples=[Example(value="a1b2c3d4-e5f6-7890-1234-567890abcdef")],
            ),
        ],
    ) -> JobStatusResponse:
        return JobStatusResponse.of(await job_queue.get(id))
