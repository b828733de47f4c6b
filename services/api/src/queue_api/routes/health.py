"""Liveness and readiness probes."""

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.response import Response
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from queue_api.auth import PUBLIC
from queue_api.context import Services
from queue_api.schemas import Message
from queue_core.errors import TransientDatabaseError


class HealthController(Controller):
    tags = ["health"]  # noqa: RUF012 - Litestar reads class attributes

    @get("/health", operation_id="health", summary="Liveness: the process answers", opt=PUBLIC)
    async def health(self) -> Message:
        """Does not touch the database: a database outage must not get the API restarted."""
        return Message(message="ok")

    @get(
        "/ready",
        operation_id="ready",
        summary="Readiness: the database answers",
        opt=PUBLIC,
        responses={
            HTTP_503_SERVICE_UNAVAILABLE: ResponseSpec(
                data_container=Message,
                description="PostgreSQL does not answer",
                generate_examples=False,
            )
        },
    )
    async def ready(self, services: NamedDependency[Services]) -> Response[Message]:
        try:
            await services.queue.ping()
        except TransientDatabaseError:
            return Response(
                Message(message="database unavailable"), status_code=HTTP_503_SERVICE_UNAVAILABLE
            )
        return Response(Message(message="ready"), status_code=HTTP_200_OK)
