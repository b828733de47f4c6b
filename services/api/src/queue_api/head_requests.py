"""``HEAD`` answered as ``GET`` without the body (RFC 9110, 9.3.2: a general-purpose server
must support both). Litestar routes ``HEAD`` only to handlers declared for it, so every ``GET``
route answered 405, and an uptime monitor or load balancer probing with ``HEAD`` (many do by
default) saw the API as down.

Wrapped around the whole app by ``queue-api``, before Litestar routes the request: the request
goes through the app as a ``GET`` (routing, the key check, rate limits, telemetry, which counts
it as a ``GET``), and the answer keeps its status and headers, ``Content-Length`` included, and
loses its body. Only ``GET`` routes are read-only here, so a ``HEAD`` changes nothing; on a route
without ``GET`` it gets the same 405 a ``GET`` would.
"""

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send


def answer_head_as_get(app: ASGIApp) -> ASGIApp:
    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] != "HEAD":
            await app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                # The server may write nothing for HEAD (uvicorn does not); this holds for any.
                message = {**message, "body": b""}
            await send(message)

        # A copy: the server's own scope still says HEAD, which tells it to write no body.
        as_get = scope.copy()
        as_get["method"] = "GET"
        await app(as_get, receive, send_without_body)

    return serve
