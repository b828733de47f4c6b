"""Keyed enqueues through a real queue-api process, black-box over HTTP: a client that never read
the answer to its request retries with the same Idempotency-Key and gets the job its first
request made, never a second one; concurrent unique enqueues make one job, and a real worker
running it frees the key."""

import json
import socket
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from e2e.stack import Api, Stack, fetch, job_counts

pytestmark = pytest.mark.e2e

JOB: dict[str, Any] = {"type": "noop", "payload": {"order": 4711}}


@pytest.fixture(name="running")
def fx_running(stack: Stack, empty_db_url: str) -> tuple[Api, str]:
    """queue-migrate, then one API and one worker, ready."""
    stack.migrate(empty_db_url)
    api = stack.spawn_api(empty_db_url)
    worker = stack.spawn_worker(empty_db_url, "worker")
    stack.wait_ready(api, worker)
    return api, empty_db_url


def _send_and_never_read(api: Api, path: str, body: dict[str, Any], key: str) -> socket.socket:
    """Send a whole POST over a raw socket and return it unread: the client that will lose
    its answer (a timeout, a dropped connection, a crash after sending)."""
    url = urlsplit(api.base_url)
    content = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(content)}\r\nIdempotency-Key: {key}\r\n"
        f"Authorization: Bearer {api.key}\r\nConnection: close\r\n\r\n"
    )
    sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=10)
    sock.sendall(head.encode() + content)
    return sock


def _jobs_with_key(database_url: str, key: str) -> list[uuid.UUID]:
    rows = fetch(database_url, "SELECT id, idempotency_key FROM jobs")
    return [r["id"] for r in rows if str(r["idempotency_key"]).endswith(f"/{key}")]


@pytest.mark.parametrize("path", ["/v1/jobs", "/jobs"])
def test_a_retry_after_a_lost_answer_gets_the_job_the_first_request_made(
    stack: Stack, running: tuple[Api, str], path: str
) -> None:
    api, database_url = running
    key = f"retry-{uuid.uuid4()}"

    sock = _send_and_never_read(api, path, JOB, key)
    stack.wait(lambda: bool(_jobs_with_key(database_url, key)), what="the first request's job")
    sock.close()  # its answer is lost: the client only knows it sent the request
    (first_id,) = _jobs_with_key(database_url, key)

    with api.client() as client:
        retried = client.post(path, json=JOB, headers={"Idempotency-Key": key})
        again = client.post(path, json=JOB, headers={"Idempotency-Key": key})
        other = client.post(
            path, json={**JOB, "payload": {"order": 1}}, headers={"Idempotency-Key": key}
        )

    for response in (retried, again):
        assert response.status_code == 200, response.text
        assert response.headers["idempotent-replayed"] == "true"
        assert str(first_id) in response.text
    assert other.status_code == 422, other.text
    assert _jobs_with_key(database_url, key) == [first_id]
    assert sum(job_counts(database_url).values()) == 1


def test_concurrent_keyed_enqueues_through_a_real_api_make_one_job_each(
    stack: Stack, running: tuple[Api, str]
) -> None:
    api, database_url = running
    # On a queue no worker serves yet: the job stays pending while the enqueues race.
    unique = {**JOB, "unique_key": "nightly-sync", "queue": "later"}

    def post(body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        with api.client() as client:
            return client.post("/v1/jobs", json=body, headers=headers)

    with ThreadPoolExecutor(max_workers=16) as pool:
        unique_answers = list(pool.map(lambda _: post(unique, {}), range(50)))
        keyed_answers = list(
            pool.map(lambda _: post(JOB, {"Idempotency-Key": "same-request"}), range(20))
        )

    for answers, not_new in ((unique_answers, "x-job-duplicate"), (keyed_answers, None)):
        assert Counter(r.status_code for r in answers) == {201: 1, 200: len(answers) - 1}
        assert len({r.json()["id"] for r in answers}) == 1
        if not_new:
            assert all(r.headers.get(not_new) == "true" for r in answers if r.status_code == 200)
    assert sum(job_counts(database_url).values()) == 2

    # A worker for its queue runs the unique job; once it has completed, the key is free again.
    unique_id = unique_answers[0].json()["id"]
    stack.start_worker(database_url, "later-worker", {"WORKER_QUEUES": "later"})
    with api.client() as client:
        stack.wait(
            lambda: client.get(f"/v1/jobs/{unique_id}").json()["status"] == "completed",
            what="the unique job completed",
        )
        after = client.post("/v1/jobs", json=unique)

    assert after.status_code == 201, after.text
    assert after.json()["id"] != unique_id
