"""A bare ASGI app served by uvicorn on uvloop with ``queue-api``'s HTTP protocol, for
test_api_http_writes.py: what only a raw client shows (back-pressure, half-closes) without
the API's own work in between. ``python protocol_server.py PORT``."""

import sys
from typing import Any

import uvicorn

from queue_api.http_protocol import OneSendPerTurnProtocol

STREAM_CHUNKS = 2000
CHUNK = b"x" * 65536
_sent = 0


async def _answer(send: Any, body: bytes) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], _receive: Any, send: Any) -> None:
    global _sent  # noqa: PLW0603 - what /sent reports, of this one-app process
    if scope["path"] == "/stream":  # 128 MiB, as fast as uvicorn's send lets it go
        length = str(STREAM_CHUNKS * len(CHUNK)).encode()
        headers = [(b"content-length", length)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i in range(STREAM_CHUNKS):
            more = i < STREAM_CHUNKS - 1
            await send({"type": "http.response.body", "body": CHUNK, "more_body": more})
            _sent = i + 1
    elif scope["path"] == "/sent":
        await _answer(send, str(_sent).encode())
    else:
        await _answer(send, b"hello")


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http=OneSendPerTurnProtocol,
        lifespan="off",
        log_level="warning",
    )
