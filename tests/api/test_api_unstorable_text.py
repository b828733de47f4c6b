"""Text PostgreSQL cannot store: a NUL character (\\u0000) or a lone UTF-16 surrogate anywhere
in type, queue or payload (names or values) gets a 400 in our words naming the field, on every
enqueue endpoint, and nothing is stored. Before, the driver's "invalid byte sequence for
encoding "UTF8": 0x00" reached the client, and a lone surrogate got "JSON is malformed: Input
data was truncated". Surrogate pairs (an emoji as escapes) are text like any other."""

import json

import asyncpg
import pytest

from api.support import ApiClient, assert_no_internals, error_body
from queue_api.json_body import UNSTORABLE_TEXT

JSON = {"content-type": "application/json"}
VALID_JOB = '{"type":"noop","payload":{"a":1}}'

# Each JSON escape PostgreSQL cannot store, spelled as clients send them.
ESCAPES = [
    pytest.param("\\u0000", id="nul"),
    pytest.param("\\ud800", id="lone-high-surrogate"),
    pytest.param("\\uDBFF", id="lone-high-surrogate-upper-case"),
    pytest.param("\\udc00", id="lone-low-surrogate"),
    pytest.param("\\ude00\\ud83d", id="surrogates-in-the-wrong-order"),
]

# (a job with X where the escape goes, the field it is in)
PLACES = [
    pytest.param('{"type":"noX","payload":{"a":1}}', "type", id="type"),
    pytest.param('{"type":"noop","queue":"qX","payload":{"a":1}}', "queue", id="queue"),
    pytest.param('{"type":"noop","payload":{"a":"X"}}', "payload", id="payload-value"),
    pytest.param('{"type":"noop","payload":{"aX":1}}', "payload", id="payload-key"),
    pytest.param('{"type":"noop","payload":{"a":{"b":["c","X"]}}}', "payload", id="payload-deep"),
]


async def post_storing_nothing(
    client: ApiClient, db: asyncpg.Connection, path: str, raw: str
) -> dict[str, object]:
    before = await db.fetchval("SELECT count(*) FROM jobs")
    response = await client.post(path, content=raw.encode(), headers=JSON)
    assert response.status_code == 400, response.text
    assert_no_internals(response)
    assert await db.fetchval("SELECT count(*) FROM jobs") == before
    return error_body(response)


def expected(path: str, key: str) -> dict[str, object]:
    return {
        "status_code": 400,
        "detail": f"Validation failed for POST {path}",
        "extra": [{"message": UNSTORABLE_TEXT, "key": key, "source": "body"}],
    }


@pytest.mark.parametrize(("job", "field"), PLACES)
@pytest.mark.parametrize("escape", ESCAPES)
async def test_post_jobs_refuses_unstorable_text_naming_the_field(
    shared_client: ApiClient, shared_db: asyncpg.Connection, job: str, field: str, escape: str
) -> None:
    raw = job.replace("X", escape)

    error = await post_storing_nothing(shared_client, shared_db, "/jobs", raw)

    assert error == expected("/jobs", field)


@pytest.mark.parametrize(("job", "field"), PLACES)
@pytest.mark.parametrize("escape", ESCAPES)
async def test_a_batch_refuses_unstorable_text_naming_the_job_and_field(
    shared_client: ApiClient, shared_db: asyncpg.Connection, job: str, field: str, escape: str
) -> None:
    raw = f'{{"jobs":[{VALID_JOB},{VALID_JOB},{job.replace("X", escape)}]}}'

    error = await post_storing_nothing(shared_client, shared_db, "/v1/jobs/batch", raw)

    assert error == expected("/v1/jobs/batch", f"jobs[2].{field}")


async def test_unstorable_text_in_an_unknown_member_name_names_no_field(
    shared_client: ApiClient, shared_db: asyncpg.Connection
) -> None:
    """A name the client made up is not quoted back: it is the client's data, and it may hold
    the very character that cannot be encoded."""
    raw = '{"type":"noop","payload":{"a":1},"x\\ud800":1}'

    error = await post_storing_nothing(shared_client, shared_db, "/jobs", raw)

    assert error == expected("/jobs", "data")


@pytest.mark.parametrize(
    ("escaped", "text"),
    [
        pytest.param("\\ud83d\\ude00", "\N{GRINNING FACE}", id="surrogate-pair"),
        pytest.param("\\uD83D\\uDE00", "\N{GRINNING FACE}", id="surrogate-pair-upper-case"),
        pytest.param("\\\\u0000", "\\u0000", id="escaped-backslash-then-u0000"),
        pytest.param("\\u0001", "\x01", id="other-control-character"),
    ],
)
async def test_text_that_only_looks_suspect_is_stored_as_sent(
    client: ApiClient, db: asyncpg.Connection, escaped: str, text: str
) -> None:
    raw = f'{{"type":"t{escaped}","payload":{{"k{escaped}":"v{escaped}"}}}}'

    response = await client.post("/jobs", content=raw.encode(), headers=JSON)

    assert response.status_code == 201, response.text
    row = await db.fetchrow("SELECT type, payload FROM jobs")
    assert row is not None
    assert row["type"] == f"t{text}"
    assert json.loads(row["payload"]) == {f"k{text}": f"v{text}"}
