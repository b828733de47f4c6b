"""POST /jobs and POST /v1/jobs answer as Litestar's own handling of the routes would
(queue_api.enqueue_fast_path).

Every request below goes to two apps on one database: the real one, whose route middleware
serves the route, and one whose route is served by Litestar as any other route (the same
handler, the strict body check as its before_request hook, no middleware). Their answers must
be the same, message for message: status, headers and body, with ids and request ids masked.
The requests are driven as ASGI messages, so a body may come in pieces, or the client leave.
"""

import copy
import dataclasses
import functools
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from litestar import Litestar, Request, Response
from litestar.background_tasks import BackgroundTask
from litestar.connection import ASGIConnection
from litestar.datastructures import CacheControlHeader, Cookie, ResponseHeader
from litestar.di import Provide
from litestar.exceptions import ImproperlyConfiguredException, NotAuthorizedException
from litestar.handlers import BaseRouteHandler, HTTPRouteHandler
from litestar.params import HeaderParameter
from litestar.testing import AsyncTestClient
from litestar.types import ASGIApp

import queue_api.app
from api.support import ApiClient, bearer, build_app, error_body
from queue_api.enqueue_fast_path import enqueue_fast_path
from queue_api.json_body import strict_json_body
from queue_api.routes.jobs import JobsController
from queue_api.routes.jobs_v1 import create_job
from queue_api.schemas import JobCreate

MAX_BODY_BYTES = 2000
JOB = b'{"type":"noop","payload":{"a":1}}'
# What differs between two jobs made alike: ids (and request ids), times.
_IDS = re.compile(
    rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}"
    rb"|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?"
)


@dataclass(frozen=True)
class Case:
    """A request: extra headers (the admin key is always sent), the body's pieces, and whether
    the client leaves after them instead of finishing the body."""

    headers: Sequence[tuple[bytes, bytes]] = ((b"content-type", b"application/json"),)
    chunks: Sequence[bytes] = (JOB,)
    leaves: bool = False
    with_length: bool = True  # a Content-Length of the pieces' total (unless headers have one)
    repeat: int = 1  # sent this many times in a row (a replayed Idempotency-Key)
    query: bytes = b""
    then: Sequence[bytes] | None = None  # the pieces of the repeats, if not the same


JSON = (b"content-type", b"application/json")
TOO_DEEP = b'{"type":"x","payload":' + b'{"a":' * 40 + b"1" + b"}" * 41


def _with_idempotency(value: bytes) -> tuple[tuple[bytes, bytes], ...]:
    return (JSON, (b"idempotency-key", value))


def _padded_to(size: int) -> bytes:
    """A valid job of exactly ``size`` bytes."""
    head, tail = b'{"type":"noop","payload":{"pad":"', b'"}}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


CASES: dict[str, Case] = {
    "a job": Case(),
    "a job in three pieces": Case(chunks=(JOB[:5], JOB[5:20], JOB[20:])),
    "a job with empty pieces around it": Case(chunks=(b"", JOB, b"")),
    "a job of type +json with parameters": Case(
        headers=((b"content-type", b"application/vnd.api+json; charset=utf-8"),)
    ),
    "upper-case media type": Case(headers=((b"content-type", b"Application/JSON"),)),
    "an idempotency key, sent twice": Case(headers=_with_idempotency(b"order-1"), repeat=2),
    "an idempotency key, sent again with another job": Case(
        headers=_with_idempotency(b"order-2"),
        repeat=2,
        then=(b'{"type":"noop","payload":{"other":true}}',),
    ),
    "a job depending on a job that does not exist": Case(
        chunks=(
            b'{"type":"noop","payload":{},"depends_on":["' + str(uuid.uuid4()).encode() + b'"]}',
        )
    ),
    "a unique key, sent twice": Case(
        chunks=(b'{"type":"noop","payload":{},"unique_key":"u-1"}',), repeat=2
    ),
    "text/plain": Case(headers=((b"content-type", b"text/plain"),)),
    "no content type": Case(headers=()),
    "empty body": Case(chunks=()),
    "blank body": Case(chunks=(b"  \n ",)),
    "malformed JSON": Case(chunks=(b'{"type":',)),
    "not UTF-8": Case(chunks=(b'{"type":"\xff"}',)),
    "nested too deeply": Case(chunks=(TOO_DEEP,)),
    "a NUL in the payload": Case(chunks=(b'{"type":"x","payload":{"a":"\\u0000"}}',)),
    "an unpaired surrogate in the type": Case(chunks=(b'{"type":"\\ud800"}',)),
    "an unknown field": Case(chunks=(b'{"type":"x","zzz":1}',)),
    "an array": Case(chunks=(b"[1,2]",)),
    "a number as text": Case(chunks=(b'{"type":"x","priority":"5"}',)),
    "an empty type": Case(chunks=(b'{"type":""}',)),
    "a job exactly at the limit": Case(chunks=(_padded_to(MAX_BODY_BYTES),)),
    "a job a byte over the limit": Case(chunks=(_padded_to(MAX_BODY_BYTES + 1),)),
    "a job a byte over the limit, unannounced": Case(
        chunks=(_padded_to(MAX_BODY_BYTES + 1),), with_length=False
    ),
    "over the limit, announced": Case(chunks=(b" " * (MAX_BODY_BYTES + 1),)),
    "over the limit, unannounced, in pieces": Case(
        chunks=(b" " * 1500, b" " * 1500), with_length=False
    ),
    "a Content-Length that is not a number": Case(headers=(JSON, (b"content-length", b"abc"))),
    "a negative Content-Length": Case(headers=(JSON, (b"content-length", b"-1"))),
    "a huge Content-Length": Case(headers=(JSON, (b"content-length", b"9" * 40))),
    "the client leaves mid-body": Case(chunks=(JOB[:10],), leaves=True),
    "an idempotency key too long": Case(headers=_with_idempotency(b"k" * 256)),
    "an empty idempotency key": Case(headers=_with_idempotency(b"")),
    "an idempotency key with a tab": Case(headers=_with_idempotency(b"a\tb")),
    "an idempotency key not ASCII": Case(headers=_with_idempotency("clé".encode("latin-1"))),
    "a bad body and a bad idempotency key": Case(
        headers=_with_idempotency(b"a\tb"), chunks=(b'{"type":5}',)
    ),
    "a bad idempotency key and a query string": Case(
        headers=_with_idempotency(b"a\tb"), query=b"x=1&y=%20"
    ),
    "a bad body and a query string": Case(chunks=(b'{"type":5}',), query=b"x=1"),
    "two idempotency keys": Case(
        headers=(JSON, (b"idempotency-key", b"first"), (b"idempotency-key", b"a\tb"))
    ),
}


def _served_by_litestar(handler: HTTPRouteHandler) -> HTTPRouteHandler:
    """``handler`` served by Litestar: no route middleware, the strict body check as a
    before_request hook (as every other JSON route has it)."""
    served = copy.copy(handler)
    served.middleware = []
    served.before_request = strict_json_body(JobCreate)
    return served


@pytest.fixture(name="litestar_served_app")
def fx_litestar_served_app(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Litestar:
    jobs = type(
        "LitestarServedJobsController",
        (JobsController,),
        {"enqueue": _served_by_litestar(JobsController.enqueue)},
    )
    with monkeypatch.context() as patched:
        patched.setattr(queue_api.app, "JobsController", jobs)
        patched.setattr(queue_api.app, "create_job", _served_by_litestar(create_job))
        return build_app(db_url, max_body_bytes=MAX_BODY_BYTES)


def _scope(path: str, case: Case, admin_key: str) -> dict[str, Any]:
    headers = [(b"authorization", bearer(admin_key)["Authorization"].encode()), *case.headers]
    if case.with_length and not any(name == b"content-length" for name, _ in case.headers):
        headers.append((b"content-length", str(sum(map(len, case.chunks))).encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": case.query,
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }


async def _exchange(app: Litestar, scope: dict[str, Any], case: Case) -> list[Any]:
    """What the app sends for ``case``, masked: (status, headers) and body bytes."""
    pieces = list(case.chunks) or [b""]
    incoming: Iterator[dict[str, Any]] = iter(
        [
            {"type": "http.request", "body": piece, "more_body": n < len(pieces) - 1 or case.leaves}
            for n, piece in enumerate(pieces)
        ]
        + [{"type": "http.disconnect"}] * 10
    )
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return next(incoming)

    length: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = [  # in the order sent
                (name, b"<n>" if name == b"content-length" else _IDS.sub(b"<id>", value))
                for name, value in message["headers"]
                if name not in (b"x-request-id", b"date")
            ]
            length.extend(v for name, v in message["headers"] if name == b"content-length")
            sent.append((message["status"], headers))
        else:
            body = message.get("body", b"")
            # Checked here, not compared: a time's digits may differ in number.
            assert length == [str(len(body)).encode()], (length, body)
            sent.append(_IDS.sub(b"<id>", body))

    await app(scope, receive, send)  # type: ignore[arg-type]
    return sent


async def _answers(
    app: Litestar, path: str, admin_key: str, case: Case, db: asyncpg.Connection
) -> tuple[list[list[Any]], int]:
    """What ``app`` answers to ``case``, and how many jobs it stored meanwhile."""
    jobs_before = await db.fetchval("SELECT count(*) FROM jobs")
    answers = []
    async with AsyncTestClient(app=app) as client:
        for n in range(case.repeat):
            sent = (
                case if n == 0 or case.then is None else dataclasses.replace(case, chunks=case.then)
            )
            scope = _scope(path, sent, admin_key)
            answers.append(client.blocking_portal.call(_exchange, app, scope, sent))
    return answers, await db.fetchval("SELECT count(*) FROM jobs") - jobs_before


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("path", ["/jobs", "/v1/jobs"])
async def test_an_enqueue_route_answers_as_litestar_would(
    path: str,
    name: str,
    *,
    db_url: str,
    db: asyncpg.Connection,
    admin_key: str,
    litestar_served_app: Litestar,
) -> None:
    case = CASES[name]
    fast = build_app(db_url, max_body_bytes=MAX_BODY_BYTES)

    # Both apps share the database: each gets keys of its own, or the second would replay.
    ours, ours_stored = await _answers(fast, path, admin_key, _fresh_keys(case), db)
    litestars, litestar_stored = await _answers(
        litestar_served_app, path, admin_key, _fresh_keys(case), db
    )

    assert ours == litestars
    assert ours_stored == litestar_stored  # no job stored behind an error, or left out
    assert ours[0], "the app sent nothing"


def _fresh_keys(case: Case) -> Case:
    """``case`` with its idempotency and unique keys made unique to this call (a suffix leaves
    a bad key bad: too long, or with a tab; the empty one is left empty)."""
    token = uuid.uuid4().hex[:8].encode()
    headers = tuple(
        (name, value + b"-" + token if name == b"idempotency-key" and value else value)
        for name, value in case.headers
    )
    chunks = tuple(chunk.replace(b'"u-1"', b'"u-' + token + b'"') for chunk in case.chunks)
    return dataclasses.replace(case, headers=headers, chunks=chunks)


async def _deny(_: ASGIConnection[Any, Any, Any, Any], __: BaseRouteHandler) -> None:
    raise NotAuthorizedException


async def _after(response: Response[Any]) -> Response[Any]:
    return response


class _OwnRequest(Request[Any, Any, Any]):
    pass


@pytest.mark.parametrize(
    ("setting", "name"),
    [
        ({"guards": [_deny]}, "guards"),
        ({"allowed_hosts": ["api.example"]}, "allowed_hosts"),
        ({"response_headers": [ResponseHeader(name="X-Version", value="1")]}, "response_headers"),
        ({"cache_control": CacheControlHeader(max_age=60)}, "response_headers"),
        ({"after_request": _after}, "after_request"),
        ({"response_cookies": [Cookie(key="k", value="v")]}, "response_cookies"),
        ({"parameters": {"tenant": HeaderParameter(name="X-Tenant")}}, "parameters"),
        ({"request_class": _OwnRequest}, "request_class"),
    ],
    ids=lambda value: value if isinstance(value, str) else next(iter(value)),
)
def test_the_app_refuses_to_start_with_a_setting_the_fast_path_would_skip(
    setting: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Litestar applies these in the part of a route the fast path does not run: each would
    silently not apply to the enqueue routes (a guard would not guard them)."""
    monkeypatch.setattr(queue_api.app, "Litestar", functools.partial(Litestar, **setting))

    with pytest.raises(ImproperlyConfiguredException, match=f"skip its .*{name}"):
        build_app("postgresql://postgres@127.0.0.1:1/unused")


async def test_a_bad_idempotency_key_is_the_headers_problem_even_beside_a_query_parameter(
    client: ApiClient,
) -> None:
    """Where the fast path differs from Litestar on purpose: Litestar names the source of a
    parameter's problem "query" whenever the query string has a member of that name, even
    when the problem is the header's."""
    response = await client.post(
        "/jobs?idempotency_key=z", json={"type": "noop", "payload": {"a": 1}},
        headers={"Idempotency-Key": "a\tb"},
    )  # fmt: skip

    assert response.status_code == 400
    (problem,) = error_body(response)["extra"]
    assert (problem["key"], problem["source"]) == ("idempotency_key", "header")


def _passthrough(app: ASGIApp) -> ASGIApp:
    return app


async def _nothing() -> None:
    pass


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"middleware": [enqueue_fast_path, _passthrough]}, "middleware inside the fast path"),
        ({"background": BackgroundTask(_nothing)}, "background"),
        ({"dependencies": {"ctx": Provide(lambda: None, sync_to_thread=False)}}, "ctx provider"),
    ],
    ids=["middleware inside", "background", "another ctx"],
)
def test_the_app_refuses_to_start_when_the_route_is_not_the_one_the_fast_path_serves(
    change: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = copy.copy(JobsController.enqueue)
    for attribute, value in change.items():
        setattr(handler, attribute, value)
    jobs = type("ChangedJobsController", (JobsController,), {"enqueue": handler})
    monkeypatch.setattr(queue_api.app, "JobsController", jobs)

    with pytest.raises(ImproperlyConfiguredException, match=f"skip its .*{name}"):
        build_app("postgresql://postgres@127.0.0.1:1/unused")
