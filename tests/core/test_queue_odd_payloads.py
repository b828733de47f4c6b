"""Payloads the API would refuse, written straight into the table, never fail a statement:
PostgreSQL holds jsonb far deeper than Python can decode, and numbers beyond a float."""

import json
import uuid

import asyncpg

from queue_core.db import UNDECODABLE_JSON
from queue_core.jobs import NewJob
from queue_core.queue import Queue

DEPTH = 5000  # PostgreSQL accepts it; msgspec and json.loads give up near 1,000


async def _insert_raw(pool: asyncpg.Pool, payload_json: str) -> uuid.UUID:
    job_id = uuid.uuid4()
    # Through text, so no Python encoder touches the value on its way in.
    await pool.execute(
        "INSERT INTO jobs (id, type, payload) VALUES ($1, 'noop', $2::text::jsonb)",
        job_id,
        payload_json,
    )
    return job_id


async def test_a_payload_too_deep_to_decode_is_claimed_and_read_as_a_marker(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    deep = await _insert_raw(pool, "[" * DEPTH + "]" * DEPTH)
    [normal] = await queue.enqueue_many([NewJob(type="noop", payload={"n": 1})])

    claimed = {
        j.id: j for j in await queue.claim(worker_id="w", queues=["default"], limit=10, lease_s=30)
    }

    # One such row must not fail the claim of the jobs beside it.
    assert set(claimed) == {deep, normal}
    assert claimed[deep].payload is UNDECODABLE_JSON
    assert claimed[normal].payload == {"n": 1}
    assert (await queue.get(deep)).payload is UNDECODABLE_JSON


async def test_odd_json_values_round_trip(queue: Queue, pool: asyncpg.Pool) -> None:
    odd = {
        # Beyond a float: PostgreSQL keeps it exact, and it reads back as an exact int.
        "huge": await _insert_raw(pool, '{"n": 1e400}'),
        "array": await _insert_raw(pool, "[1, 2, 3]"),
        "scalar": await _insert_raw(pool, '"text"'),
        "null": await _insert_raw(pool, "null"),
        "deep_ok": await _insert_raw(pool, json.dumps(_nested(500))),
    }
    claimed = {
        j.id: j.payload
        for j in await queue.claim(worker_id="w", queues=["default"], limit=10, lease_s=30)
    }
    assert claimed[odd["huge"]] == {"n": 10**400}
    assert claimed[odd["array"]] == [1, 2, 3]
    assert claimed[odd["scalar"]] == "text"
    assert claimed[odd["null"]] is None
    assert claimed[odd["deep_ok"]] == _nested(500)


def _nested(depth: int) -> object:
    value: object = {}
    for _ in range(depth):
        value = {"a": value}
    return value
