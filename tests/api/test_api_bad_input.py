"""POST /jobs on bad input: every mistake is a 4xx whose JSON body names it, and stores nothing.

The long tables run against one database per module (``shared_db_url``) and check that the
request added no row, rather than paying for a fresh database per case.
"""

import json
from collections.abc import AsyncIterator, Mapping

import asyncpg
import httpx
import pytest

from api.support import SEED_SEND_EMAIL, ApiClient, ClientFactory, error_body, problem_text

PAYLOAD = '"payload":{"to":"a@example.com"}'
JSON = {"content-type": "application/json"}


async def post_storing_nothing(
    client: ApiClient, db: asyncpg.Connection, raw: bytes, headers: Mapping[str, str] = JSON
) -> httpx.Response:
    """POST ``raw`` to /jobs, and check afterwards that it added no job."""
    before = await db.fetchval("SELECT count(*) FROM jobs")
    response = await client.post("/jobs", content=raw, headers=dict(headers))
    after = await db.fetchval("SELECT count(*) FROM jobs")
    assert after == before, (
        f"a rejected request stored a job: {response.status_code} {response.text}"
    )
    return response


def obj(*members: str) -> bytes:
    """A JSON object from raw ``"key":value`` members, so a table row shows the exact bytes sent."""
    return ("{" + ",".join(members) + "}").encode()


TYPE = '"type":"t"'

# (raw body, a fragment of the error that names the problem). Fragments read "field: message"
# for one field's problem, or quote the parser or validator for the body as a whole.
BAD_BODIES = [
    # Not JSON at all
    pytest.param(b"{not json", "JSON is malformed", id="malformed-json"),
    pytest.param(obj(TYPE, PAYLOAD)[:-1], "truncated", id="truncated-json"),
    pytest.param(obj(TYPE, PAYLOAD) + b" x", "JSON is malformed", id="trailing-garbage"),
    # JSON, but not an object
    pytest.param(b"[]", "Expected `object`, got `array`", id="array-body"),
    pytest.param(b"[" + obj(TYPE, PAYLOAD) + b"]", "got `array`", id="array-of-jobs"),
    pytest.param(b'"send_email"', "Expected `object`, got `str`", id="string-body"),
    pytest.param(b"42", "Expected `object`, got `int`", id="number-body"),
    pytest.param(b"null", "Expected `object`, got `null`", id="null-body"),
    pytest.param(b"true", "Expected `object`, got `bool`", id="bool-body"),
    # type
    pytest.param(obj(PAYLOAD), "missing required field `type`", id="type-missing"),
    pytest.param(obj('"type":""', PAYLOAD), "type: Expected `str`", id="type-empty"),
    pytest.param(obj('"type":" \\t"', PAYLOAD), "type: Expected `str`", id="type-blank"),
    pytest.param(obj('"type":7', PAYLOAD), "type: Expected `str`, got `int`", id="type-number"),
    pytest.param(obj('"type":null', PAYLOAD), "type: Expected `str`, got `null`", id="type-null"),
    pytest.param(obj('"type":["t"]', PAYLOAD), "type: Expected `str`, got `array`", id="type-list"),
    pytest.param(
        obj(f'"type":"{"t" * 256}"', PAYLOAD),
        "type: Expected `str` of length <= 255",
        id="type-long",
    ),
    # payload
    pytest.param(obj(TYPE), "missing required field `payload`", id="payload-missing"),
    pytest.param(
        obj(TYPE, '"payload":{}'), "payload: Expected `object` of length >= 1", id="payload-empty"
    ),
    pytest.param(
        obj(TYPE, '"payload":null'), "payload: Expected `object`, got `null`", id="payload-null"
    ),
    pytest.param(
        obj(TYPE, '"payload":"hi"'), "payload: Expected `object`, got `str`", id="payload-string"
    ),
    pytest.param(
        obj(TYPE, '"payload":[1]'), "payload: Expected `object`, got `array`", id="payload-list"
    ),
    pytest.param(
        obj(TYPE, '"payload":3'), "payload: Expected `object`, got `int`", id="payload-number"
    ),
    # unknown fields and the optional ones
    pytest.param(obj(TYPE, PAYLOAD, '"priorty":1'), "unknown field `priorty`", id="unknown-field"),
    pytest.param(obj(TYPE, PAYLOAD, '"id":"x"'), "unknown field `id`", id="client-chosen-id"),
    pytest.param(
        obj(TYPE, PAYLOAD, '"priority":32768'),
        "priority: Expected `int` <= 32767",
        id="priority-too-high",
    ),
    pytest.param(
        obj(TYPE, PAYLOAD, '"priority":-32769'),
        "priority: Expected `int` >= -32768",
        id="priority-too-low",
    ),
    pytest.param(
        obj(TYPE, PAYLOAD, '"priority":1.5'), "priority: Expected `int`", id="priority-fraction"
    ),
    pytest.param(
        obj(TYPE, PAYLOAD, '"priority":true'),
        "priority: Expected `int`, got `bool`",
        id="priority-bool",
    ),
    pytest.param(
        obj(TYPE, PAYLOAD, '"max_attempts":0'),
        "max_attempts: Expected `int` >= 1",
        id="max_attempts-zero",
    ),
    pytest.param(
        obj(TYPE, PAYLOAD, '"max_attempts":-3'),
        "max_attempts: Expected `int` >= 1",
        id="max_attempts-negative",
    ),
    pytest.param(
        obj(TYPE, PAYLOAD, '"max_attempts":1001'),
        "max_attempts: Expected `int` <= 1000",
        id="max_attempts-too-high",
    ),
    pytest.param(
        obj(TYPE, PAYLOAD, '"scheduled_at":"2030-01-01T00:00:00"'),
        "scheduled_at: must include a timezone offset",
        id="scheduled_at-without-offset",
    ),
    pytest.param(
        obj(TYPE, PAYLOAD, '"scheduled_at":"tomorrow"'),
        "scheduled_at: Invalid RFC3339",
        id="scheduled_at-not-a-date",
    ),
    pytest.param(
        obj(TYPE, PAYLOAD, '"scheduled_at":"2030-13-01T00:00:00Z"'),
        "scheduled_at: Invalid RFC3339",
        id="scheduled_at-month-13",
    ),
]


@pytest.mark.parametrize(("raw", "problem"), BAD_BODIES)
async def test_post_jobs_rejects_bad_body_with_400_naming_the_problem(
    shared_client: ApiClient, shared_db: asyncpg.Connection, raw: bytes, problem: str
) -> None:
    response = await post_storing_nothing(shared_client, shared_db, raw)

    assert response.status_code == 400, response.text
    body = error_body(response)
    assert problem in problem_text(body), body


@pytest.mark.parametrize(
    "queue_json",
    [
        pytest.param('" "', id="blank"),
        pytest.param('""', id="empty"),
        pytest.param(f'"{"q" * 256}"', id="too-long"),
        pytest.param("7", id="number"),
        pytest.param("null", id="null"),
    ],
)
async def test_post_jobs_rejects_an_invalid_queue_with_400_naming_the_field(
    shared_client: ApiClient, shared_db: asyncpg.Connection, queue_json: str
) -> None:
    """`queue` is both a body field and the name of the handler's injected dependency; Litestar
    blames a failure on a dependency's name on the server. The client's mistake must stay a 400."""
    raw = obj(TYPE, PAYLOAD, '"queue":' + queue_json)

    response = await post_storing_nothing(shared_client, shared_db, raw)

    assert response.status_code == 400, response.text
    assert "queue: Expected `str`" in problem_text(error_body(response))


async def test_post_jobs_rejects_an_empty_body_with_400_saying_the_body_is_missing(
    shared_client: ApiClient, shared_db: asyncpg.Connection
) -> None:
    response = await post_storing_nothing(shared_client, shared_db, b"")

    assert response.status_code == 400
    text = problem_text(error_body(response)).lower()
    # Today the only clue is the message "'data'", a KeyError's repr.
    assert any(word in text for word in ("empty", "missing", "required")), text


@pytest.mark.parametrize(
    ("member", "field"),
    [
        pytest.param('"priority":"5"', "priority", id="priority-as-string"),
        pytest.param('"max_attempts":"3"', "max_attempts", id="max_attempts-as-string"),
        pytest.param('"scheduled_at":1900000000', "scheduled_at", id="scheduled_at-as-number"),
    ],
)
async def test_post_jobs_rejects_fields_of_the_wrong_json_type_with_400(
    shared_client: ApiClient, shared_db: asyncpg.Connection, member: str, field: str
) -> None:
    """The OpenAPI schema promises an integer (or an RFC 3339 string); a string "5" or a Unix
    timestamp is a client mistake, not something to coerce silently."""
    response = await post_storing_nothing(shared_client, shared_db, obj(TYPE, PAYLOAD, member))

    assert response.status_code == 400, response.text
    assert f"{field}: " in problem_text(error_body(response))


async def test_post_jobs_rejects_a_body_that_is_not_utf8_with_400(
    shared_client: ApiClient, shared_db: asyncpg.Connection
) -> None:
    raw = b'{"type":"\xff\xfe","payload":{"a":1}}'

    response = await post_storing_nothing(shared_client, shared_db, raw)

    assert response.status_code == 400, response.text
    error_body(response)


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        pytest.param({"content-type": "text/plain"}, "'text/plain'", id="text-plain"),
        pytest.param(
            {"content-type": "application/x-www-form-urlencoded"},
            "'application/x-www-form-urlencoded'",
            id="form",
        ),
        pytest.param({"content-type": "application/xml"}, "'application/xml'", id="xml"),
        pytest.param({}, "'none'", id="no-content-type"),
    ],
)
async def test_post_jobs_rejects_a_non_json_content_type_with_415(
    shared_client: ApiClient, shared_db: asyncpg.Connection, headers: dict[str, str], named: str
) -> None:
    raw = json.dumps(SEED_SEND_EMAIL).encode()

    response = await post_storing_nothing(shared_client, shared_db, raw, headers)

    assert response.status_code == 415
    assert error_body(response) == {
        "status_code": 415,
        "detail": f"Content-Type must be application/json, got {named}",
    }


LIMIT_BYTES = 1024


def body_of_size(size: int) -> bytes:
    """A valid job body of exactly ``size`` bytes."""
    skeleton = json.dumps({"type": "t", "payload": {"pad": ""}}, separators=(",", ":"))
    return skeleton.replace('""', '"' + "x" * (size - len(skeleton)) + '"').encode()


@pytest.fixture(name="small_client")
async def fx_small_client(make_client: ClientFactory, db_url: str) -> AsyncIterator[ApiClient]:
    """A client for an app configured with API_MAX_BODY_BYTES=1024."""
    async with make_client(db_url, max_body_bytes=LIMIT_BYTES) as client:
        yield client


@pytest.mark.parametrize("size", [LIMIT_BYTES + 1, 2048, 64 * 1024])
async def test_post_jobs_rejects_a_body_over_the_configured_limit_with_413(
    small_client: ApiClient, db: asyncpg.Connection, size: int
) -> None:
    response = await post_storing_nothing(small_client, db, body_of_size(size))

    assert response.status_code == 413
    assert error_body(response) == {"status_code": 413, "detail": "Request Entity Too Large"}


async def test_post_jobs_accepts_a_body_of_exactly_the_configured_limit(
    small_client: ApiClient, db: asyncpg.Connection
) -> None:
    body = body_of_size(LIMIT_BYTES)
    assert len(body) == LIMIT_BYTES

    response = await small_client.post("/jobs", content=body, headers=JSON)

    assert response.status_code == 201, response.text
    assert await db.fetchval("SELECT count(*) FROM jobs") == 1
