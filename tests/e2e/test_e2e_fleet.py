"""The fleet with real processes: results and snoozes stored by a real worker, workers in the
registry (GET /v1/workers) until SIGTERM, queues paused and resumed over HTTP (GET /v1/queues),
a pause that outlives a worker's restart, and API_REJECT_UNKNOWN_TYPES."""

import json
import os
import signal
import time
import uuid
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.stack import Api, Stack, Worker, enqueue, fetch, wait_for_status

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent
TASKS_ENV: Mapping[str, str] = {
    "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    "WORKER_TASKS": "queue_worker.builtin_tasks,fleet_tasks",
}
EXIT_TIMEOUT_S = 15.0
# The promise: a worker claims nothing from a queue paused this long ago.
PAUSE_TAKES_EFFECT_S = 1.0


def _job(job_id: uuid.UUID, database_url: str) -> Mapping[str, Any]:
    (row,) = fetch(database_url, f"SELECT * FROM jobs WHERE id = '{job_id}'")
    job = dict(row)
    for column in ("result", "errors"):  # jsonb, as text on a plain asyncpg connection
        job[column] = None if job[column] is None else json.loads(job[column])
    return job


def _workers(client: httpx.Client) -> list[dict[str, Any]]:
    response = client.get("/v1/workers")
    assert response.status_code == 200, response.text
    workers: list[dict[str, Any]] = response.json()["workers"]
    return workers


def _queue(client: httpx.Client, name: str) -> dict[str, Any]:
    response = client.get("/v1/queues")
    assert response.status_code == 200, response.text
    return next(q for q in response.json()["queues"] if q["name"] == name)


def _stop(stack: Stack, worker: Worker) -> None:
    worker.proc.signal(signal.SIGTERM)
    code = worker.proc.wait(timeout_s=EXIT_TIMEOUT_S)
    assert code == 0, f"worker exit status {code}\n{stack.logs()}"


def test_a_real_worker_stores_results_errors_and_snoozes(stack: Stack, db_url: str) -> None:
    api = stack.spawn_api(db_url)
    worker = stack.spawn_worker(db_url, "worker", {**TASKS_ENV, "WORKER_MAX_RESULT_BYTES": "64"})
    stack.wait_ready(api, worker)

    with api.client() as client:
        answered = enqueue(client, {"type": "answer", "payload": {"q": "life"}})
        too_big = enqueue(
            client, {"type": "big_result", "payload": {"size": 100}, "max_attempts": 2}
        )
        snoozed = enqueue(
            client, {"type": "snooze_once", "payload": {"seconds": 0.5}, "max_attempts": 1}
        )
        for job_id in (answered, too_big, snoozed):
            wait_for_status(stack, client, job_id)

    answer, big, snooze = (_job(j, db_url) for j in (answered, too_big, snoozed))
    logs = stack.logs()
    assert (answer["status"], answer["result"]) == ("completed", {"answer": 42, "echo": "life"})
    assert big["status"] == "failed", logs
    assert big["result"] is None
    assert [(e["attempt"], e["error"]) for e in big["errors"]] == [
        (n, "the result is too large: 102 bytes of JSON, at most 64 (WORKER_MAX_RESULT_BYTES)")
        for n in (1, 2)
    ]
    # One attempt allowed, and it completed after a snooze: the snooze spent none.
    assert (snooze["status"], snooze["attempts"], snooze["result"]) == ("completed", 1, "woke up")
    assert snooze["errors"] is None
    assert snooze["finished_at"] - snooze["created_at"] >= timedelta(seconds=0.5)
    outcomes = [line["outcome"] for line in worker.events("job_finished")]
    assert outcomes.count("snoozed") == 1, logs


def test_workers_are_listed_while_alive_and_removed_on_sigterm(stack: Stack, db_url: str) -> None:
    api = stack.spawn_api(db_url)
    mail = stack.spawn_worker(db_url, "worker-mail", {"WORKER_QUEUES": "mail,default"})
    other = stack.spawn_worker(db_url, "worker-other", {"WORKER_CONCURRENCY": "3"})
    stack.wait_ready(api, mail, other)

    with api.client() as client:
        stack.wait(lambda: len(_workers(client)) == 2, what="two workers registered")
        listed = {w["pid"]: w for w in _workers(client)}
        stack.wait(
            lambda: (
                _queue(client, "mail")["workers"] == 1 and _queue(client, "default")["workers"] == 2
            ),
            what="GET /v1/queues counts each queue's workers",
        )

        _stop(stack, mail)
        after = _workers(client)

    assert set(listed) == {mail.proc.pid, other.proc.pid}
    entry = listed[mail.proc.pid]
    assert entry["queues"] == ["mail", "default"]
    assert entry["task_types"] == ["fail", "noop", "send_email", "sleep"]
    assert entry["concurrency"] == 10
    assert entry["id"].split(":")[1] == str(mail.proc.pid)  # its lease owner id
    assert listed[other.proc.pid]["concurrency"] == 3
    # Gone at once on a clean shutdown, not after the liveness window.
    assert [w["pid"] for w in after] == [other.proc.pid], stack.logs()
    assert "worker_unregistered" in mail.event_names()


def _started_after(database_url: str, queue: str) -> list[Mapping[str, Any]]:
    return [
        dict(r)
        for r in fetch(
            database_url,
            "SELECT q.paused_at, max(j.started_at) AS last_start,"
            " count(*) FILTER (WHERE j.status = 'pending') AS pending"
            f" FROM jobs AS j JOIN queues AS q ON q.name = j.queue WHERE j.queue = '{queue}'"
            " GROUP BY q.paused_at",
        )
    ]


def test_pausing_stops_claims_within_a_second_and_resuming_restarts_them(
    stack: Stack, db_url: str
) -> None:
    api = stack.spawn_api(db_url)
    workers = [stack.spawn_worker(db_url, f"worker-{n}", {"WORKER_CONCURRENCY": "4"}) for n in "ab"]
    stack.wait_ready(api, *workers)

    with api.client() as client:
        jobs = [{"type": "sleep", "payload": {"seconds": 0.05}} for _ in range(400)]
        response = client.post("/v1/jobs/batch", json={"jobs": jobs})
        assert response.status_code == 201, response.text
        stack.wait(lambda: _queue(client, "default")["running"] > 0, what="jobs running")

        paused = client.post("/v1/queues/default/pause")
        assert paused.status_code == 200, paused.text
        assert paused.json()["paused"] is True
        time.sleep(PAUSE_TAKES_EFFECT_S + 0.5)  # the window in which claims must have stopped
        (first,) = _started_after(db_url, "default")
        time.sleep(1.0)  # ... and nothing starts after it
        (second,) = _started_after(db_url, "default")
        listed = _queue(client, "default")

        resumed = client.post("/v1/queues/default/resume")
        stack.wait(lambda: _queue(client, "default")["due"] == 0, what="backlog drained")

    logs = stack.logs()
    lag = first["last_start"] - first["paused_at"]
    print(f"last claim {lag.total_seconds():.3f} s after the pause")  # noqa: T201 - a measurement
    assert lag < timedelta(seconds=PAUSE_TAKES_EFFECT_S), logs
    assert first["pending"] > 0, "the backlog ran out before the pause: nothing was proven"
    assert second == first, logs
    assert listed["paused"] is True
    assert listed["paused_at"] is not None
    assert listed["workers"] == 2
    assert listed["running"] == 0
    assert listed["due"] == first["pending"]
    assert resumed.json() == {"name": "default", "paused": False, "paused_at": None}


def test_a_pause_outlives_a_worker_restart(stack: Stack, db_url: str) -> None:
    api = stack.spawn_api(db_url)
    worker = stack.spawn_worker(db_url, "worker-1")
    stack.wait_ready(api, worker)

    with api.client() as client:
        assert client.post("/v1/queues/default/pause").status_code == 200
        _stop(stack, worker)
        job_id = enqueue(client, {"type": "noop", "payload": {"a": 1}})
        restarted = stack.start_worker(db_url, "worker-2")
        stack.wait(lambda: len(_workers(client)) == 1, what="the new worker registered")
        time.sleep(PAUSE_TAKES_EFFECT_S + 0.5)  # it would have claimed by now
        waiting = _job(job_id, db_url)

        assert client.post("/v1/queues/default/resume").status_code == 200
        done = wait_for_status(stack, client, job_id)

    assert waiting["status"] == "pending", stack.logs()
    assert done["Status"] == "completed"
    assert restarted.proc.popen.poll() is None


def test_reject_unknown_types_refuses_what_no_live_worker_serves(stack: Stack, db_url: str) -> None:
    api = stack.spawn_api(db_url, env={"API_REJECT_UNKNOWN_TYPES": "true"})
    worker = stack.spawn_worker(db_url, "worker", {"WORKER_QUEUES": "default"})
    stack.wait_ready(api, worker)
    with api.client() as client:
        stack.wait(lambda: len(_workers(client)) == 1, what="the worker registered")
        # The API caches the live workers for a few seconds: wait until it has seen this one.
        stack.wait(
            lambda: _post(api, {"type": "noop", "payload": {"a": 1}}).status_code == 201,
            what="noop accepted",
        )
        unknown_type = _post(api, {"type": "nope", "payload": {"a": 1}})
        unknown_queue = _post(api, {"type": "noop", "payload": {"a": 1}, "queue": "elsewhere"})
        batch = client.post(
            "/v1/jobs/batch",
            json={
                "jobs": [{"type": "noop", "payload": {"a": 1}}, {"type": "x", "payload": {"a": 1}}]
            },
        )

    assert unknown_type.status_code == 422, unknown_type.text
    assert unknown_type.json()["detail"].startswith(
        "no live worker serves job type 'nope' on queue 'default'"
    )
    assert unknown_queue.status_code == 422
    assert "'elsewhere'" in unknown_queue.json()["detail"]
    assert batch.status_code == 422
    assert fetch(db_url, "SELECT type, queue FROM jobs WHERE type <> 'noop'") == []


def _post(api: Api, body: Mapping[str, Any]) -> httpx.Response:
    with api.client() as client:
        return client.post("/jobs", json=body)
