"""A worker that starts in front of a backlog larger than its concurrency works through it."""

import pytest

from e2e.stack import Stack, enqueue, job_counts

pytestmark = pytest.mark.e2e

CONCURRENCY = 2
BACKLOG = 10


def test_a_worker_drains_a_backlog_larger_than_its_concurrency(stack: Stack, db_url: str) -> None:
    api = stack.start_api(db_url)
    with api.client() as client:
        for n in range(BACKLOG):
            enqueue(client, {"type": "noop", "payload": {"n": n}})

    worker = stack.start_worker(db_url, "worker", {"WORKER_CONCURRENCY": str(CONCURRENCY)})

    stack.wait(
        lambda: job_counts(db_url) == {"completed": BACKLOG},
        what=f"all {BACKLOG} jobs completed",
        alive=[worker.proc],
        timeout_s=10,
        detail=lambda: str(job_counts(db_url)),
    )
