"""A deadline for receiving a request's body (``API_BODY_TIMEOUT_S``).

uvicorn waits as long as a client likes between two pieces of a body, so a client that sends its
headers and then a byte now and then (or never) would hold a connection, a task and a buffer for
as long as it pleases; a few thousand such clients would take the API down. This pure ASGI
middleware gives the whole body one deadline, counted from when the request reaches the app
(its headers are in). Past it, reading the body raises :class:`BodyTimeoutError`, which
errors.py answers with a 408 that closes the connection.
"""

import asyncio
from collections.abc import Callable

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send


class BodyTimeoutError(Exception):
    """The request's body did not arrive within the deadline."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"request body not received within {timeout_s:g} s")


def body_timeout_middleware(timeout_s: float) -> Callable[[ASGIApp], ASGIApp]:
    """Middleware (for Litestar's ``middleware=[...]``) bounding each body by ``timeout_s``."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            deadline = asyncio.get_running_loop().time() + timeout_s
            body_received = False

            async def receive_by_deadline() -> ReceiveMessage:
                nonlocal body_received
                if body_received:
                    # Only http.disconnect comes after the body, whenever the client leaves:
                    # waiting for it has no deadline.
                    return await receive()
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    raise BodyTimeoutError(timeout_s) from None
                body_received = message["type"] != "http.request" or not message.get("more_body")
                return message

            await app(scope, receive_by_deadline, send)

        return middleware

    return wrap
