"""One canonical log line per request, with a request id bound for every line logged meanwhile.

The id comes from the caller's ``X-Request-ID`` when it sends a sane one (so a trace spans
services), otherwise a new one; it is echoed back in the response header. Bodies and payloads
are never logged.
"""

import logging
import re
import time

import structlog
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from uuid_utils import uuid7

from queue_core.log import get_logger

log = get_logger("queue_api.request")

_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})  # probes and scrapes: debug only


def request_log_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        method = scope["method"]
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        # A new id is a UUIDv7: ordered by time, and a tenth of uuid4's cost (no system call).
        request_id = incoming if _SANE_ID.match(incoming) else uuid7().hex
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableScopeHeaders.from_message(message)["X-Request-ID"] = request_id
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await app(scope, receive, send_with_id)
            finally:
                path = scope["path"]
                level = logging.DEBUG if path in _QUIET_PATHS and status < 500 else logging.INFO
                log.log(
                    level,
                    "request",
                    method=method,
                    path=path,
                    route=scope.get("path_template", path),
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 3),
                )

    return middleware
