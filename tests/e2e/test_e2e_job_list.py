"""The v1 job reads black-box, on real processes: jobs enqueued over HTTP and run by a real
worker are waited on with GET /v1/jobs/{id}?wait=, then listed with filters and followed page
by page through next_cursor."""

import uuid
from typing import Any

import httpx
import pytest

from e2e.stack import Stack, enqueue

pytestmark = pytest.mark.e2e

WAIT_S = 15


def _pages(client: httpx.Client, **params: Any) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        response = client.get(
            "/v1/jobs", params={**params, **({"cursor": cursor} if cursor else {})}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["jobs"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "the cursor never ends"


def test_jobs_run_by_a_worker_are_waited_on_then_listed_by_filter_and_cursor(
    stack: Stack, db_url: str
) -> None:
    api = stack.start_api(db_url)
    stack.start_worker(db_url, "worker", {"WORKER_QUEUES": "alpha,beta"})
    with api.client() as client:
        ok = [
            enqueue(client, {"type": "noop", "payload": {"n": n}, "queue": "alpha"})
            for n in range(7)
        ]
        failing = {"type": "fail", "payload": {"message": "no"}, "queue": "beta", "max_attempts": 1}
        bad = [enqueue(client, failing) for _ in range(3)]

        # ?wait= answers once the worker has finished each job (well within its bound).
        finished = {}
        for job_id in ok + bad:
            response = client.get(f"/v1/jobs/{job_id}", params={"wait": WAIT_S}, timeout=WAIT_S + 5)
            assert response.status_code == 200, response.text
            finished[job_id] = response.json()
        assert {finished[j]["status"] for j in ok} == {"completed"}
        assert {finished[j]["status"] for j in bad} == {"failed"}
        assert all(finished[j]["error_message"] for j in bad)

        everything = _pages(client, limit=3)
        failed = _pages(client, status="failed")
        alpha = _pages(client, queue="alpha", limit=2)
        both = _pages(client, status=["failed", "completed"], type="noop", limit=4)
        bad_cursor = client.get("/v1/jobs", params={"cursor": "not-a-cursor"})

    newest_first = [str(i) for i in sorted(ok + bad, key=lambda i: i.bytes, reverse=True)]
    assert [job["id"] for page in everything for job in page] == newest_first
    assert [len(page) for page in everything] == [3, 3, 3, 1]
    assert [job["id"] for job in failed[0]] == [str(i) for i in sorted(bad, reverse=True)]
    alpha_ids = [job["id"] for page in alpha for job in page]
    assert alpha_ids == [str(i) for i in sorted(ok, reverse=True)]
    assert len(set(alpha_ids)) == len(ok)
    assert {job["queue"] for page in alpha for job in page} == {"alpha"}
    assert [job["id"] for page in both for job in page] == alpha_ids
    assert "payload" not in everything[0][0]
    assert bad_cursor.status_code == 400
    assert uuid.UUID(everything[0][0]["id"]).version == 7
