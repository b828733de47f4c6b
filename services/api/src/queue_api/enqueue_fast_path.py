"""The single-job enqueue routes (``POST /jobs``, ``POST /v1/jobs``) without Litestar's
per-request machinery around their handlers.

They are the routes other services call once per job, and whose CPU sets how many jobs a
replica takes in. Around a handler, Litestar builds a ``Request``, runs the signature model over
the handler's parameters (decoding the body a second time, after the strict check), resolves
its dependency, and renders the ``Response`` through a chain of objects. Measured in-process
(``benchmarks/api_cpu.py``), that was about 45 of the 103 µs of CPU a ``POST /jobs`` cost, more
than storing the job did.

So this route middleware serves each of them itself, doing what Litestar would do, in the same
order and with the same answers:

1. the body's Content-Type (415), then the body read whole, bounded by the route's
   ``API_MAX_BODY_BYTES`` (413) as ``Request.body`` bounds it, then the strict decoding every
   JSON body goes through (``json_body``: 400);
2. the ``Idempotency-Key`` header checked against the declared parameter's constraints, with
   msgspec's messages, which are Litestar's (400);
3. the declared handler's own function called with what Litestar would pass it, so what the
   route does stays with its declaration, and its ``Response`` sent as Litestar sends it.

Everything else is as for any route: Litestar routes the request (405, OPTIONS, CORS) and
documents the route from its declaration; the app's middleware (request telemetry, the body
deadline, the key check) runs before this; an exception raised here or by the handler is
answered as one raised by a route (the app's exception handlers, Litestar's error shape); the
app's ``before_send`` hook adds the security headers. :func:`check_nothing_bypassed` refuses to
start an app in which such a route has a setting that Litestar would apply in the part skipped.
"""

import math
from typing import TYPE_CHECKING, Annotated, Any, Final, cast, get_args

import msgspec
from litestar import Litestar, Request
from litestar.enums import MediaType, ScopeType
from litestar.exceptions import (
    ClientException,
    ImproperlyConfiguredException,
    InternalServerException,
)
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.handlers import HTTPRouteHandler
from litestar.middleware._internal.exceptions.middleware import ExceptionHandlerMiddleware
from litestar.response import Response
from litestar.types import (
    ASGIApp,
    HTTPRequestEvent,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    Scope,
    Send,
)

from queue_api.context import context_of, provide_context
from queue_api.enqueueing import IDEMPOTENCY_HEADER, IdempotencyKeyHeader
from queue_api.json_body import check_media_type, decode_strictly, invalid
from queue_api.raw_headers import raw_header
from queue_api.schemas import ErrorDetail, JobCreate

if TYPE_CHECKING:
    from litestar.params import HeaderParameter

_DECODER: Final = msgspec.json.Decoder(JobCreate, strict=True)
_ENCODER: Final = msgspec.json.Encoder()
_IDEMPOTENCY_HEADER: Final = IDEMPOTENCY_HEADER.lower().encode("latin-1")
# The declared header parameter (enqueueing.IdempotencyKeyHeader), its constraints read from
# it, as the type msgspec checks a value against: Litestar checks the parameter with msgspec too,
# so the messages are the ones it gives.
_DECLARED: Final = cast("HeaderParameter", get_args(IdempotencyKeyHeader)[1])
_IdempotencyKey = Annotated[
    str,
    msgspec.Meta(
        min_length=_DECLARED.min_length, max_length=_DECLARED.max_length, pattern=_DECLARED.pattern
    ),
]
# The handler's parameter the header is passed as: the name a 400 gives, as Litestar's does.
_IDEMPOTENCY_PARAMETER: Final = "idempotency_key"
_HANDLER_PARAMETERS: Final = frozenset({"data", "ctx", _IDEMPOTENCY_PARAMETER})


def enqueue_fast_path(app: ASGIApp) -> ASGIApp:
    """The route middleware (``@post(..., middleware=[enqueue_fast_path])``) of a handler
    taking ``data`` (a :class:`JobCreate`), ``ctx`` and ``idempotency_key``. ``app``, the
    route as Litestar would serve it, is called for anything but an HTTP request only.
    :func:`check_nothing_bypassed` must pass on the app (``create_app`` calls it)."""

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        handler = cast("HTTPRouteHandler", scope["route_handler"])
        where = f"{scope['method']} {scope.get('root_path', '')}{scope['path']}"
        check_media_type(scope)
        data = decode_strictly(await _body(handler, scope, receive), _DECODER, where)
        idempotency_key = _idempotency_key(scope, where)
        response = await handler.fn(
            data=data, ctx=context_of(scope), idempotency_key=idempotency_key
        )
        await _send(response, handler.status_code, send)

    # What this raises is answered right here, through the ``send`` it was given (request
    # telemetry's: the request id, the status in the metrics), where Litestar answers what a
    # route raises; not left to whatever middleware outside happens to catch it.
    return ExceptionHandlerMiddleware(app=serve, debug=None)


def check_nothing_bypassed(app: Litestar) -> None:
    """Refuse to start when a route served by :func:`enqueue_fast_path` is not the route it
    was written for, or has a setting that Litestar applies in the part of the route it skips:
    such a setting would silently not apply (a guard would not guard, a required parameter
    would not be required)."""
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if (
                isinstance(handler, HTTPRouteHandler)
                and enqueue_fast_path in handler.resolve_middleware()
                and (found := _skipped(app, handler))
            ):
                raise ImproperlyConfiguredException(
                    f"{handler} is served by enqueue_fast_path, which would skip its "
                    f"{', '.join(found)}"
                )


def _skipped(app: Litestar, handler: HTTPRouteHandler) -> list[str]:
    """What of ``handler``'s settings the fast path would skip, by name. (Not type encoders:
    the handlers answer msgspec structs of plain values, which need none; nor exception
    handlers, the route's opt or its body limit, which the fast path honours.)"""
    provider = handler.resolve_dependencies().get("ctx")
    settings = {
        "csrf_config": app.csrf_config,
        "compression_config": app.compression_config,
        "allowed_hosts": app.allowed_hosts,
        "guards": handler.resolve_guards(),
        "parameters": handler.resolve_layered_parameters(),
        "before_request": handler.resolve_before_request(),
        "after_request": [layer.after_request for layer in handler.ownership_layers
                          if getattr(layer, "after_request", None)],
        "after_response": handler.resolve_after_response(),
        "background": handler.background,
        "response_headers": [h for h in handler.resolve_response_headers()
                             if not h.documentation_only],
        "response_cookies": handler.resolve_response_cookies(),
        "dto": handler.resolve_data_dto() or handler.resolve_return_dto(),
        "request_class": handler.resolve_request_class() is not Request,
        "media_type": handler.media_type not in ("", MediaType.JSON),
        "cache": handler.cache,
        # What the fast path calls: the handler's own function, with these parameters, the
        # request context from context_of (as provide_context makes it), and nothing between.
        "signature": set(handler.parsed_fn_signature.parameters) != _HANDLER_PARAMETERS,
        "sync function": handler.has_sync_callable,
        "ctx provider": provider is None or provider.dependency is not provide_context,
        "middleware inside the fast path": handler.resolve_middleware()[0] is not enqueue_fast_path,
    }  # fmt: skip
    return sorted(name for name, value in settings.items() if value)


async def _body(handler: HTTPRouteHandler, scope: Scope, receive: Receive) -> bytes:
    """The whole body, bounded as Litestar's ``Request.stream`` bounds it: refused before
    reading when the announced length is over the limit, and as soon as the bytes received are."""
    limit = handler.resolve_request_max_body_size() or math.inf
    announced = raw_header(scope, b"content-length")
    if announced is not None:
        try:
            announced_bytes = int(announced)
        except ValueError:
            raise ClientException(f"Invalid content-length: {announced!r}") from None
        if announced_bytes > limit:
            raise RequestEntityTooLarge
    chunks: list[bytes] = []
    received = 0
    while True:
        received_message = await receive()
        if received_message["type"] == "http.disconnect":
            raise InternalServerException("client disconnected prematurely")
        message = cast("HTTPRequestEvent", received_message)
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            raise RequestEntityTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _idempotency_key(scope: Scope, where: str) -> str | None:
    value = raw_header(scope, _IDEMPOTENCY_HEADER)
    if value is None:
        return None
    try:
        return msgspec.convert(value, _IdempotencyKey)
    except msgspec.ValidationError as exc:
        problem = ErrorDetail(message=str(exc), key=_IDEMPOTENCY_PARAMETER, source="header")
        # Litestar names the request with its query string for a parameter's problem (and
        # without it for the body's).
        if query := scope["query_string"].decode("utf-8", errors="replace"):
            where = f"{where}?{query}"
        raise invalid(where, [problem]) from None


async def _send(response: Any, default_status: int, send: Send) -> None:  # noqa: ANN401 - the handler's return
    """The handler's ``Response``, as Litestar renders one with a JSON body and no cookies
    (without a status of its own, the route's)."""
    if (
        not isinstance(response, Response)
        or response.media_type not in (None, MediaType.JSON)
        or response.cookies
        or response.background
    ):
        raise TypeError(f"an enqueue handler must return a plain JSON Response: {response!r}")
    body = _ENCODER.encode(response.content)
    headers = [  # in Litestar's order
        *((name.lower().encode("latin-1"), value.encode("latin-1"))
          for name, value in response.headers.items()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("latin-1")),
    ]  # fmt: skip
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": response.status_code or default_status,
        "headers": headers,
    }
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(end)
