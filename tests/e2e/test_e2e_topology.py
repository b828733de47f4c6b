"""The production topology: queue-migrate, then queue-api and two queue-workers on one
database, driven over HTTP the way a client of the seed's contract would."""

import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from e2e.stack import SEED_SEND_EMAIL, Topology, enqueue, fetch, job_counts, wait_for_status

pytestmark = pytest.mark.e2e

NOOP_JOBS = 200


def test_seed_examples_and_builtin_tasks_reach_their_final_status(topology: Topology) -> None:
    with topology.api.client() as client:
        bodies: dict[str, dict[str, Any]] = {
            "send_email": dict(SEED_SEND_EMAIL),
            "noop-1": {"type": "noop", "payload": {"n": 1}},
            "noop-2": {"type": "noop", "payload": {"n": 2}},
            "sleep": {"type": "sleep", "payload": {"seconds": 0.3}},
            "fail": {"type": "fail", "payload": {"message": "boom-e2e"}, "max_attempts": 2},
            "unknown": {"type": "no_such_type", "payload": {"x": 1}},
        }
        ids = {name: enqueue(client, body) for name, body in bodies.items()}
        final = {name: wait_for_status(topology.stack, client, ids[name]) for name in ids}

    logs = topology.stack.logs()
    for name in ("send_email", "noop-1", "noop-2", "sleep"):
        assert final[name]["Status"] == "completed", f"{name}: {final[name]}\n{logs}"
        assert final[name]["Attempts"] == 1, f"{name}: {final[name]}\n{logs}"
        assert final[name]["ErrorMessage"] is None, f"{name}: {final[name]}\n{logs}"
    assert final["send_email"]["Payload"] == SEED_SEND_EMAIL["payload"]
    assert final["send_email"]["Type"] == "send_email"
    assert final["send_email"]["ID"] == str(ids["send_email"])

    assert final["fail"]["Status"] == "failed", f"{final['fail']}\n{logs}"
    assert final["fail"]["Attempts"] == 2, f"{final['fail']}\n{logs}"
    assert final["fail"]["MaxAttempts"] == 2, final["fail"]
    assert "boom-e2e" in final["fail"]["ErrorMessage"], f"{final['fail']}\n{logs}"

    assert final["unknown"]["Status"] == "failed", f"{final['unknown']}\n{logs}"
    assert "no handler" in final["unknown"]["ErrorMessage"], f"{final['unknown']}\n{logs}"


def test_two_workers_share_a_burst_of_noop_jobs(topology: Topology) -> None:
    stack = topology.stack
    with topology.api.client() as client, ThreadPoolExecutor(max_workers=16) as pool:
        ids = set(
            pool.map(
                lambda n: enqueue(client, {"type": "noop", "payload": {"n": n}}),
                range(NOOP_JOBS),
            )
        )
    assert len(ids) == NOOP_JOBS

    stack.wait(
        lambda: job_counts(topology.database_url) == {"completed": NOOP_JOBS},
        what=f"all {NOOP_JOBS} jobs completed",
        alive=[worker.proc for worker in topology.workers],
        timeout_s=20,
        detail=lambda: str(job_counts(topology.database_url)),
    )

    def finished_by(worker_index: int) -> list[uuid.UUID]:
        events = topology.workers[worker_index].events("job_finished")
        return [uuid.UUID(e["job_id"]) for e in events if e.get("type") == "noop"]

    # Each worker logs job_finished just after recording the outcome, so the log may trail
    # the database by a moment.
    stack.wait(
        lambda: len(finished_by(0)) + len(finished_by(1)) >= NOOP_JOBS,
        what="a job_finished line for every job",
        timeout_s=10,
    )
    per_worker = [finished_by(0), finished_by(1)]
    counts = Counter(job_id for finished in per_worker for job_id in finished)
    logs = stack.logs()
    assert set(counts) == ids, logs
    assert max(counts.values()) == 1, f"some jobs ran twice: {counts.most_common(3)}\n{logs}"
    assert all(per_worker), f"one worker did nothing: {[len(f) for f in per_worker]}\n{logs}"
    rows = fetch(topology.database_url, "SELECT count(*) AS n FROM jobs WHERE attempts <> 1")
    assert rows[0]["n"] == 0, logs
