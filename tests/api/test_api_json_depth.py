"""Nesting depth: a body may nest arrays and objects MAX_JSON_DEPTH (32) levels deep, its own
object included; deeper gets a 400 naming the limit, on every enqueue endpoint. Before, ~1,000
levels made msgspec raise RecursionError: a 500."""

import json
from collections.abc import Callable

import asyncpg
import pytest

from api.support import ApiClient, assert_no_internals, error_body
from e2e.stack import Api
from queue_api.json_limits import MAX_JSON_DEPTH

JSON = {"content-type": "application/json"}
TOO_DEEP = {
    "status_code": 400,
    "detail": f"JSON is nested too deeply: at most {MAX_JSON_DEPTH} levels of arrays and "
    "objects are accepted",
}


def job_nested(depth: int) -> bytes:
    """A job whose body nests exactly ``depth`` levels: its object, the payload object, then
    arrays."""
    arrays = depth - 2
    return b'{"type":"noop","payload":{"a":' + b"[" * arrays + b"]" * arrays + b"}}"


def batch_nested(depth: int) -> bytes:
    """A batch whose second job makes the body nest exactly ``depth`` levels (the batch object,
    its list and the job object come first)."""
    job = job_nested(depth - 2)
    return b'{"jobs":[{"type":"noop","payload":{"a":1}},' + job + b"]}"


def branching_job(depth: int) -> bytes:
    """A job nesting exactly ``depth`` levels in which every array also holds an empty array
    and an empty object: no long run of opening brackets, unlike a plain chain."""
    inner = b"[]"
    for _ in range(depth - 3):
        inner = b"[[],{}," + inner + b"]"
    return b'{"type":"noop","payload":{"a":' + inner + b"}}"


def depth_of(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    return 0


@pytest.mark.parametrize("build", [job_nested, batch_nested, branching_job])
def test_the_helpers_build_the_depth_they_claim(build: Callable[[int], bytes]) -> None:
    assert depth_of(json.loads(build(MAX_JSON_DEPTH))) == MAX_JSON_DEPTH


ENDPOINTS = [
    pytest.param("/jobs", job_nested, id="jobs"),
    pytest.param("/v1/jobs/batch", batch_nested, id="batch"),
]


@pytest.mark.parametrize(("path", "build"), ENDPOINTS)
async def test_a_body_nested_to_the_limit_is_stored(
    client: ApiClient, db: asyncpg.Connection, path: str, build: Callable[[int], bytes]
) -> None:
    response = await client.post(path, content=build(MAX_JSON_DEPTH), headers=JSON)

    assert response.status_code == 201, response.text
    assert await db.fetchval("SELECT count(*) FROM jobs") >= 1


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1000, 100_000])
@pytest.mark.parametrize(("path", "build"), ENDPOINTS)
async def test_a_body_nested_deeper_answers_400_naming_the_limit(
    shared_client: ApiClient,
    shared_db: asyncpg.Connection,
    path: str,
    build: Callable[[int], bytes],
    depth: int,
) -> None:
    before = await shared_db.fetchval("SELECT count(*) FROM jobs")

    response = await shared_client.post(path, content=build(depth), headers=JSON)

    assert response.status_code == 400, response.text
    assert error_body(response) == TOO_DEEP
    assert_no_internals(response)
    assert await shared_db.fetchval("SELECT count(*) FROM jobs") == before


@pytest.mark.parametrize(
    ("depth", "status"),
    [
        pytest.param(MAX_JSON_DEPTH, 201, id="at-the-limit"),
        pytest.param(MAX_JSON_DEPTH + 1, 400, id="one-over"),
    ],
)
async def test_a_branching_body_is_measured_by_its_deepest_branch(
    client: ApiClient, depth: int, status: int
) -> None:
    response = await client.post("/jobs", content=branching_job(depth), headers=JSON)

    assert response.status_code == status, response.text


async def test_brackets_inside_strings_do_not_count_as_nesting(
    client: ApiClient, db: asyncpg.Connection
) -> None:
    text = '[{"\\"' * 1000  # brackets, quotes and escaped quotes, all inside one string
    body = {"type": "noop", "payload": {"text": text}}

    response = await client.post("/jobs", json=body)

    assert response.status_code == 201, response.text
    assert json.loads(await db.fetchval("SELECT payload FROM jobs")) == {"text": text}


async def test_a_wide_but_shallow_payload_is_stored(
    client: ApiClient, db: asyncpg.Connection
) -> None:
    payload = {"rows": [[index, {"b": [index]}] for index in range(2000)]}

    response = await client.post("/jobs", json={"type": "noop", "payload": payload})

    assert response.status_code == 201, response.text
    assert json.loads(await db.fetchval("SELECT payload FROM jobs")) == payload


@pytest.mark.parametrize("tail", [b"", b"\\"], ids=["unterminated", "ending-in-a-backslash"])
def test_an_unterminated_string_of_escaped_quotes_is_refused_quickly(
    api_process: Api, tail: bytes
) -> None:
    """Against a real process, with a client timeout: the quadratic scan this guards against
    would hold the server for hours inside one C call, which nothing in-process can interrupt.
    Linear, it takes milliseconds."""
    body = b'{"type":"noop","payload":{"a":' + b"[" * 40 + b'"' + b'\\"' * 300_000 + tail

    with api_process.client() as client:
        response = client.post("/jobs", content=body, headers=JSON)

    assert response.status_code == 400, response.text
