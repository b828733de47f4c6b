"""The worker's side port: /healthz follows the claim loop, /metrics is Prometheus text."""

import httpx

from queue_core.queue import Queue
from queue_core.retry import Backoff
from queue_core.tasks import TaskRegistry
from queue_worker.http import SidePortServer
from queue_worker.metrics import PrometheusEvents
from queue_worker.runner import Runner, RunnerConfig

STALL_AFTER_S = 30.0


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _runner(queue: Queue, clock: ManualClock) -> Runner:
    config = RunnerConfig(
        queues=("default",),
        concurrency=1,
        poll_interval_s=1.0,
        lease_s=30.0,
        heartbeat_s=5.0,
        shutdown_grace_s=1.0,
        backoff=Backoff(),
    )
    events = PrometheusEvents(1, types=(), queues=("default",))
    return Runner(queue, TaskRegistry(), config, clock=clock, events=events)


def test_healthz_answers_503_once_the_claim_loop_has_not_turned_for_the_stall_limit(
    queue: Queue,
) -> None:
    clock = ManualClock()
    runner = _runner(queue, clock)
    side = SidePortServer("127.0.0.1", 0, lambda: runner.health(STALL_AFTER_S))
    side.start()
    try:
        url = f"http://127.0.0.1:{side.port}"
        healthy = httpx.get(f"{url}/healthz", timeout=5)
        assert (healthy.status_code, healthy.json()) == (200, {"status": "ok"})

        clock.now += STALL_AFTER_S + 1  # the loop's last turn is now too old
        stalled = httpx.get(f"{url}/healthz", timeout=5)
        assert stalled.status_code == 503
        assert stalled.json()["problems"] == ["claim loop stalled"]

        metrics = httpx.get(f"{url}/metrics", timeout=5)
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        assert "queue_worker_concurrency 1.0" in metrics.text
        assert httpx.get(f"{url}/elsewhere", timeout=5).status_code == 404
    finally:
        side.stop()
