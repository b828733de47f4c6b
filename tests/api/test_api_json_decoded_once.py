"""Every JSON body is decoded once: the strict check's value (json_body.strict_json_body) is
what the handler gets, and Litestar's own JSON decoding never runs (it cost a batch of 1,000
jobs 1.9 ms, twice the strict decoding). POST /jobs and POST /v1/jobs have a path of their own
(test_api_enqueue_fast_path.py)."""

from typing import Any, NoReturn

import asyncpg
import litestar.connection.request
import pytest

from api.support import ApiClient, build_app

# Each route whose body the strict check decodes: a request it takes, and its success status.
REQUESTS: dict[tuple[str, str], tuple[dict[str, Any], int]] = {
    ("POST", "/v1/jobs/batch"): (
        {"jobs": [{"type": "t", "payload": {"n": 1}}, {"type": "t", "payload": {"n": 2}}]},
        201,
    ),
    ("POST", "/v1/jobs/cancel"): ({"status": ["pending"], "limit": 1}, 200),
    ("POST", "/v1/jobs/retry"): ({"status": ["cancelled"], "limit": 1}, 200),
    ("POST", "/v1/keys"): ({"name": "decoded-once", "scopes": ["jobs:read"]}, 201),
    ("PUT", "/v1/keys/decoded-once/limits"): ({"requests_per_s": 5, "requests_burst": 10}, 200),
}


def test_the_requests_cover_every_route_the_strict_check_decodes() -> None:
    app = build_app("postgresql://unused@127.0.0.1:1/none")
    strict = {
        (method, route.path.replace("{name_or_prefix:str}", "decoded-once"))
        for route in app.routes
        for handler in getattr(route, "route_handlers", [])
        if (hook := handler.resolve_before_request()) is not None
        and hook.__qualname__.startswith("strict_json_body.")
        for method in handler.http_methods
    }
    assert strict == set(REQUESTS)


async def test_handlers_get_the_strictly_decoded_body_without_decoding_it_again(
    client: ApiClient, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    def decode_again(*_: object, **__: object) -> NoReturn:
        raise AssertionError("Litestar decoded a body the strict check had decoded")

    monkeypatch.setattr(litestar.connection.request, "decode_json", decode_again)

    for (method, path), (body, status) in REQUESTS.items():
        response = await client.request(method, path, json=body)
        assert response.status_code == status, (method, path, response.text)

    # What the handlers did with the values they got: the batch's two jobs (one cancelled by
    # the bulk cancel, then retried by the bulk retry), the key and its limits.
    jobs = await db.fetch("SELECT payload->>'n' AS n, status FROM jobs ORDER BY 1")
    assert [(r["n"], r["status"]) for r in jobs] == [("1", "pending"), ("2", "pending")]
    limits = await db.fetchrow("SELECT * FROM api_keys WHERE name = 'decoded-once'")
    assert limits is not None
    assert (limits["requests_per_s"], limits["requests_burst"]) == (5, 10)
