"""The request id and the canonical log line of every request."""

import re
from collections.abc import Iterator

import pytest
import structlog
from prometheus_client import REGISTRY
from structlog.typing import EventDict

from api.support import SEED_SEND_EMAIL, ApiClient, ClientFactory
from queue_api.request_telemetry import APP_NAME


@pytest.fixture(name="lines")
def fx_lines() -> Iterator[list[EventDict]]:
    """The log events with the bound context merged in, as the real renderers see them."""
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as events:
        yield events


def _request_lines(lines: list[EventDict]) -> list[EventDict]:
    return [line for line in lines if line["event"] == "request"]


async def test_a_request_gets_a_new_id_that_its_response_and_log_line_carry(
    shared_client: ApiClient, lines: list[EventDict]
) -> None:
    response = await shared_client.post("/jobs", json=SEED_SEND_EMAIL)

    assert response.status_code == 201
    request_id = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    [line] = _request_lines(lines)
    assert line["request_id"] == request_id
    assert line["log_level"] == "info"
    assert (line["method"], line["path"], line["route"], line["status"]) == (
        "POST",
        "/jobs",
        "/jobs",
        201,
    )
    assert line["duration_ms"] >= 0


async def test_ids_of_separate_requests_differ(shared_client: ApiClient) -> None:
    first = await shared_client.get("/health")
    second = await shared_client.get("/health")

    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_a_callers_sane_request_id_is_kept(
    shared_client: ApiClient, lines: list[EventDict]
) -> None:
    response = await shared_client.get(
        "/jobs/status?id=a1b2c3d4-e5f6-7890-1234-567890abcdef",
        headers={"X-Request-ID": "edge-7f3a:42"},
    )

    assert response.status_code == 404
    assert response.headers["x-request-id"] == "edge-7f3a:42"
    [line] = _request_lines(lines)
    assert (line["request_id"], line["route"], line["status"]) == (
        "edge-7f3a:42",
        "/jobs/status",
        404,
    )


@pytest.mark.parametrize("incoming", ["two words", "x" * 129, "<script>", ""])
async def test_a_request_id_that_is_not_sane_is_replaced(
    shared_client: ApiClient, incoming: str
) -> None:
    response = await shared_client.get("/health", headers={"X-Request-ID": incoming})

    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


async def test_probes_are_logged_at_debug_only(
    shared_client: ApiClient, lines: list[EventDict]
) -> None:
    await shared_client.get("/health")

    assert [line["log_level"] for line in _request_lines(lines)] == ["debug"]


def _requests_counted(status: int) -> float:
    sample = REGISTRY.get_sample_value(
        "queue_api_requests_total",
        {"method": "POST", "path": "/jobs", "status_code": str(status), "app_name": APP_NAME},
    )
    return sample or 0.0


async def test_a_request_refused_for_its_key_is_logged_and_counted_with_its_own_status(
    make_client: ClientFactory, shared_db_url: str, lines: list[EventDict]
) -> None:
    """The key check runs in a middleware: what it refuses must still pass through the request
    telemetry, not be answered around it (no request id, and counted as a 500)."""
    before = {status: _requests_counted(status) for status in (401, 500)}
    async with make_client(shared_db_url, key=None) as client:
        response = await client.post("/jobs", json=SEED_SEND_EMAIL)

    assert response.status_code == 401
    request_id = response.headers["x-request-id"]
    [line] = _request_lines(lines)
    assert (line["request_id"], line["status"]) == (request_id, 401)
    assert _requests_counted(401) == before[401] + 1
    assert _requests_counted(500) == before[500]
