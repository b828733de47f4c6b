"""Limits per key and dependencies with real processes: three workers and a concurrency limit
checked against the handlers' own start and end times, other keys flowing meanwhile; a rate per
key measured from the claims' times; dependency chains, a failing parent and a cancel through
the API; and a SIGKILLed worker's keyed job whose slot the rescue frees."""

import json
import os
import signal
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import pytest

from e2e.stack import Api, Stack, fetch

pytestmark = pytest.mark.e2e

HERE = os.path.dirname(__file__)  # noqa: PTH120 - a str for PYTHONPATH
TASKS_ENV: Mapping[str, str] = {
    "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    "WORKER_TASKS": "queue_worker.builtin_tasks,key_limit_tasks",
    "WORKER_CONCURRENCY": "8",
}
FAST_LEASE_ENV: Mapping[str, str] = {
    "WORKER_LEASE_S": "3",
    "WORKER_HEARTBEAT_S": "0.5",
    "WORKER_RESCUE_INTERVAL_S": "0.5",
}
DONE_TIMEOUT_S = 60.0


def _batch(client: httpx.Client, jobs: Sequence[Mapping[str, Any]]) -> list[uuid.UUID]:
    response = client.post("/v1/jobs/batch", json={"jobs": list(jobs)})
    assert response.status_code == 201, response.text
    return [uuid.UUID(i) for i in response.json()["ids"]]


def _job(client: httpx.Client, job_id: uuid.UUID) -> dict[str, Any]:
    response = client.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _wait_all_final(stack: Stack, database_url: str, ids: Sequence[uuid.UUID]) -> None:
    wanted = ",".join(f"'{i}'" for i in ids)
    sql = (
        f"SELECT count(*) AS n FROM jobs WHERE id IN ({wanted}) "
        "AND status IN ('completed', 'failed', 'cancelled')"
    )
    stack.wait(
        lambda: fetch(database_url, sql)[0]["n"] == len(ids),
        what=f"{len(ids)} jobs finished",
        timeout_s=DONE_TIMEOUT_S,
    )


def _results(database_url: str, ids: Sequence[uuid.UUID]) -> list[dict[str, Any]]:
    wanted = ",".join(f"'{i}'" for i in ids)
    rows = fetch(database_url, f"SELECT status, result FROM jobs WHERE id IN ({wanted})")
    assert {r["status"] for r in rows} == {"completed"}, [dict(r) for r in rows]
    return [json.loads(r["result"]) for r in rows]


def _most_at_once(spans: Sequence[Mapping[str, float]]) -> int:
    """The most spans open at one instant (an end before a start at the same instant)."""
    events = sorted([(s["start"], 1) for s in spans] + [(s["end"], -1) for s in spans])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most


def _start_fleet(stack: Stack, database_url: str, workers: int, **env: str) -> Api:
    api = stack.spawn_api(database_url)
    procs = [
        stack.spawn_worker(database_url, f"worker-{n}", {**TASKS_ENV, **env})
        for n in range(workers)
    ]
    stack.wait_ready(api, *procs)
    return api


def test_three_workers_never_run_more_than_the_limit_while_other_keys_flow(
    stack: Stack, db_url: str
) -> None:
    api = _start_fleet(stack, db_url, 3)
    limited = {"type": "timed", "payload": {"sleep_s": 0.02}, "concurrency_key": "tenant:1"}
    with api.client() as client:
        ids = _batch(client, [{**limited, "concurrency_limit": 2}] * 100)
        others = _batch(
            client,
            [
                {
                    "type": "timed",
                    "payload": {"sleep_s": 0.02},
                    "concurrency_key": f"tenant:{2 + n % 20}",
                    "concurrency_limit": 3,
                }
                for n in range(100)
            ],
        )
        plain = _batch(client, [{"type": "timed", "payload": {"sleep_s": 0}}] * 50)
    _wait_all_final(stack, db_url, [*ids, *others, *plain])

    spans = _results(db_url, ids)
    other_spans = _results(db_url, others)
    assert _most_at_once(spans) <= 2, stack.logs()
    # Nothing starved behind the full key: every other key's job was done before the last of
    # the limited key's 100 (50 rounds of 2 at least) even started.
    assert max(s["end"] for s in other_spans) < max(s["start"] for s in spans)
    print(  # noqa: T201 - the figure, reported not asserted
        f"\nlimit 2: at most {_most_at_once(spans)} at once over "
        f"{max(s['end'] for s in spans) - min(s['start'] for s in spans):.2f} s"
    )


def test_a_rate_per_key_holds_across_workers(stack: Stack, db_url: str) -> None:
    api = _start_fleet(stack, db_url, 3)
    rate, burst, count = 20.0, 2, 40
    job = {
        "type": "timed",
        "payload": {"sleep_s": 0},
        "concurrency_key": "rated",
        "rate_limit": rate,
        "rate_burst": burst,
    }
    with api.client() as client:
        ids = _batch(client, [job] * count)
    _wait_all_final(stack, db_url, ids)

    wanted = ",".join(f"'{i}'" for i in ids)
    starts = sorted(
        r["t"]
        for r in fetch(
            db_url,
            f"SELECT extract(epoch FROM started_at)::float8 AS t FROM jobs WHERE id IN ({wanted})",
        )
    )
    # The generic cell rate algorithm's promise: any n consecutive starts span at least
    # (n - burst) / rate seconds (claims are stamped by the database's clock, which decides).
    for i in range(count):
        for j in range(i + burst, count):
            assert starts[j] - starts[i] >= (j - i + 1 - burst) / rate - 1e-3, (i, j, starts)
    measured = (count - burst) / (starts[-1] - starts[0])
    print(f"\nrate limit {rate}/s burst {burst}: measured {measured:.1f}/s")  # noqa: T201


def test_dependency_chains_failures_and_cancels_through_the_api(stack: Stack, db_url: str) -> None:
    api = _start_fleet(stack, db_url, 2)
    with api.client() as client:
        chain = _batch(
            client,
            [
                {"type": "timed", "payload": {"sleep_s": 0.05}},
                {"type": "timed", "payload": {"sleep_s": 0}, "depends_on": ["$0"]},
                {"type": "timed", "payload": {"sleep_s": 0}, "depends_on": ["$1", "$0"]},
            ],
        )
        failing = _batch(
            client,
            [
                {"type": "fail_for_good", "payload": {"sleep_s": 0}},
                {"type": "timed", "payload": {"sleep_s": 0}, "depends_on": ["$0"]},
                {"type": "timed", "payload": {"sleep_s": 0}, "depends_on": ["$1"]},
            ],
        )
        held = _batch(
            client,
            [
                {
                    "type": "timed",
                    "payload": {"sleep_s": 0},
                    "scheduled_at": "2199-01-01T00:00:00Z",
                },
                {"type": "timed", "payload": {"sleep_s": 0}, "depends_on": ["$0"]},
            ],
        )
        waiting = _job(client, held[1])
        assert waiting["waiting_for"] == 1
        assert waiting["depends_on"] == [
            {"id": str(held[0]), "status": "pending", "completed": False}
        ]
        assert client.post(f"/v1/jobs/{held[0]}/cancel").status_code == 200

        ghost = uuid.uuid4()
        unknown = client.post(
            "/v1/jobs",
            json={"type": "timed", "payload": {"sleep_s": 0}, "depends_on": [str(ghost)]},
        )
        assert unknown.status_code == 400, unknown.text
        assert str(ghost) in unknown.json()["detail"]
        by_index = client.post(
            "/v1/jobs", json={"type": "timed", "payload": {"sleep_s": 0}, "depends_on": ["$0"]}
        )
        assert by_index.status_code == 400, by_index.text
        forward = client.post(
            "/v1/jobs/batch",
            json={"jobs": [{"type": "timed", "payload": {"sleep_s": 0}, "depends_on": ["$0"]}]},
        )
        assert forward.status_code == 400, forward.text
        assert forward.json()["extra"][0]["key"] == "jobs[0].depends_on"
        too_many = client.post(
            "/v1/jobs",
            json={"type": "timed", "payload": {"sleep_s": 0}, "depends_on": [str(ghost)] * 101},
        )
        assert too_many.status_code == 400, too_many.text

        _wait_all_final(stack, db_url, [*chain, *failing, *held])
        spans = _results(db_url, chain)
        by_id = dict(zip(chain, spans, strict=True))
        assert by_id[chain[0]]["end"] <= by_id[chain[1]]["start"]
        assert by_id[chain[1]]["end"] <= by_id[chain[2]]["start"]
        assert _job(client, chain[2])["depends_on"] == [
            {"id": str(chain[0]), "status": "completed", "completed": True},
            {"id": str(chain[1]), "status": "completed", "completed": True},
        ]

        middle, last = _job(client, failing[1]), _job(client, failing[2])
        assert (middle["status"], middle["error_message"]) == (
            "failed",
            f"dependency {failing[0]} failed",
        )
        assert (last["status"], last["error_message"]) == (
            "failed",
            f"dependency {failing[1]} failed",
        )
        cancelled = _job(client, held[1])
        assert (cancelled["status"], cancelled["error_message"]) == (
            "cancelled",
            f"dependency {held[0]} was cancelled",
        )


def test_a_killed_workers_keyed_job_is_rescued_and_frees_its_slot(
    stack: Stack, db_url: str
) -> None:
    api = stack.spawn_api(db_url)
    victim = stack.spawn_worker(db_url, "victim", {**TASKS_ENV, **FAST_LEASE_ENV})
    stack.wait_ready(api, victim)
    solo = {"concurrency_key": "solo", "concurrency_limit": 1}
    with api.client() as client:
        [stuck] = _batch(
            client,
            [{"type": "timed", "payload": {"sleep_s": 600}, "max_attempts": 1, **solo}],
        )
        stack.wait(
            lambda: _job(client, stuck)["status"] == "running",
            what="the long job running",
            timeout_s=DONE_TIMEOUT_S,
        )
        [after] = _batch(client, [{"type": "timed", "payload": {"sleep_s": 0}, **solo}])
        victim.proc.signal(signal.SIGKILL)
        victim.proc.wait(timeout_s=10)
        survivor = stack.spawn_worker(db_url, "survivor", {**TASKS_ENV, **FAST_LEASE_ENV})
        stack.wait_ready(survivor)
        _wait_all_final(stack, db_url, [stuck, after])

        lost = _job(client, stuck)
        assert lost["status"] == "failed"
        assert "rescued from a lost worker" in lost["error_message"]
        assert _job(client, after)["status"] == "completed"
