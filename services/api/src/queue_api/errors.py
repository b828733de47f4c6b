"""How queue_core's errors and unexpected failures become HTTP responses.

Every error answer is JSON in Litestar's shape (``{"status_code": ..., "detail": ...}``). Nothing
of a traceback, SQL or a driver message ever reaches the client; the log gets the details.
"""

from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_404_NOT_FOUND,
    HTTP_408_REQUEST_TIMEOUT,
    HTTP_409_CONFLICT,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import ExceptionHandlersMap

from queue_api.body_timeout import BodyTimeoutError, ClientLeftError
from queue_core.errors import (
    IdempotencyKeyReusedError,
    InvalidJobError,
    JobNotFoundError,
    JobStateConflictError,
    TransientDatabaseError,
)
from queue_core.keys import ApiKeyNotFoundError, DuplicateKeyNameError, InvalidKeySpecError
from queue_core.log import get_logger

log = get_logger("queue_api.errors")

RETRY_AFTER_S = 1


def _body(status: int, detail: str) -> dict[str, object]:
    return {"status_code": status, "detail": detail}


def database_unavailable(_: Request, exc: TransientDatabaseError) -> Response[dict[str, object]]:  # type: ignore[type-arg]
    log.warning("database_unavailable", error=str(exc))
    return Response(
        _body(HTTP_503_SERVICE_UNAVAILABLE, "database unavailable, try again shortly"),
        status_code=HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def job_not_found(_: Request, exc: JobNotFoundError) -> Response[dict[str, object]]:  # type: ignore[type-arg]
    return Response(_body(HTTP_404_NOT_FOUND, str(exc)), status_code=HTTP_404_NOT_FOUND)


def job_state_conflict(_: Request, exc: JobStateConflictError) -> Response[dict[str, object]]:  # type: ignore[type-arg]
    return Response(_body(HTTP_409_CONFLICT, str(exc)), status_code=HTTP_409_CONFLICT)


def invalid_job(_: Request, exc: InvalidJobError) -> Response[dict[str, object]]:  # type: ignore[type-arg]
    return Response(_body(HTTP_400_BAD_REQUEST, str(exc)), status_code=HTTP_400_BAD_REQUEST)


def reused_key(_: Request, exc: IdempotencyKeyReusedError) -> Response[dict[str, object]]:  # type: ignore[type-arg]
    return Response(
        _body(HTTP_422_UNPROCESSABLE_ENTITY, str(exc)), status_code=HTTP_422_UNPROCESSABLE_ENTITY
    )


def key_not_found(_: Request, exc: ApiKeyNotFoundError) -> Response[dict[str, object]]:  # type: ignore[type-arg]
    return Response(_body(HTTP_404_NOT_FOUND, str(exc)), status_code=HTTP_404_NOT_FOUND)


def duplicate_key_name(_: Request, exc: DuplicateKeyNameError) -> Response[dict[str, object]]:  # type: ignore[type-arg]
    return Response(_body(HTTP_409_CONFLICT, str(exc)), status_code=HTTP_409_CONFLICT)


def invalid_key_spec(_: Request, exc: InvalidKeySpecError) -> Response[dict[str, object]]:  # type: ignore[type-arg]
    return Response(_body(HTTP_400_BAD_REQUEST, str(exc)), status_code=HTTP_400_BAD_REQUEST)


def body_timeout(_: Request, exc: BodyTimeoutError) -> Response[dict[str, object]]:  # type: ignore[type-arg]
    # The rest of the body may still be on its way: only closing the connection stops it.
    return Response(
        _body(HTTP_408_REQUEST_TIMEOUT, str(exc)),
        status_code=HTTP_408_REQUEST_TIMEOUT,
        headers={"Connection": "close"},
    )


# Not a status any client sees (there is none left to see it): what the request log and the
# metrics record, nginx's "client closed request", so that it is not counted as a 5xx.
CLIENT_LEFT = 499


def client_left(_: Request, exc: ClientLeftError) -> Response[dict[str, object]]:  # type: ignore[type-arg]
    return Response(_body(CLIENT_LEFT, str(exc)), status_code=CLIENT_LEFT)


def unexpected(request: Request, exc: Exception) -> Response[dict[str, object]]:  # type: ignore[type-arg]
    if isinstance(exc, HTTPException):  # Litestar's own 4xx/5xx: keep its status and detail
        body = _body(exc.status_code, exc.detail)
        if exc.extra:
            body["extra"] = exc.extra
        return Response(body, status_code=exc.status_code, headers=exc.headers)
    log.error("request_failed", method=request.method, path=request.url.path, exc_info=exc)
    return Response(
        _body(HTTP_500_INTERNAL_SERVER_ERROR, "internal error"),
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    TransientDatabaseError: database_unavailable,
    JobNotFoundError: job_not_found,
    InvalidJobError: invalid_job,
    JobStateConflictError: job_state_conflict,
    IdempotencyKeyReusedError: reused_key,
    BodyTimeoutError: body_timeout,
    ClientLeftError: client_left,
    ApiKeyNotFoundError: key_not_found,
    DuplicateKeyNameError: duplicate_key_name,
    InvalidKeySpecError: invalid_key_spec,
    Exception: unexpected,
}
