"""A flood of made-up names cannot grow /metrics: 20,000 jobs, each with a job type and a queue
of its own, enqueued through the real queue-api while two queue-workers run. Every name outside
the configuration is counted as ``other``, by the API and by the workers, so each /metrics stays
a few dozen series per family however many names clients invent."""

from collections import defaultdict
from collections.abc import Iterator, Sequence

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from e2e.stack import Stack, Worker, job_counts
from queue_core.metric_labels import OTHER_LABEL

pytestmark = pytest.mark.e2e

FLOOD = 20_000
BATCH = 1000  # the most POST /v1/jobs/batch takes
# Queues of the flood that each worker serves, so that its jobs (types without a handler, each
# failed at once) pass through the workers' metrics too. Every queue a worker serves is a label
# it may name, so this stays a handful: with 20,000 it would be the workers' configuration,
# not the clients, that made /metrics big.
SERVED_PER_WORKER = 25
KNOWN = 2  # noop jobs on the default queue: configured names keep their labels
HANDLER_TYPES = {"noop", "sleep", "fail", "send_email"}
# Before the label bounds, this flood made the API's /metrics 20,000 series per family and
# 8 MB; bounded, under a hundred samples and 12 kB.
MAX_SERIES_PER_FAMILY = 200
MAX_BODY_BYTES = 100_000


def flood_type(n: int) -> str:
    return f"flood-type-{n}"


def flood_queue(n: int) -> str:
    return f"flood-queue-{n}"


def served(worker_index: int) -> list[str]:
    first = worker_index * SERVED_PER_WORKER
    return [flood_queue(n) for n in range(first, first + SERVED_PER_WORKER)]


def batches() -> Iterator[list[dict[str, object]]]:
    for start in range(0, FLOOD, BATCH):
        yield [
            {"type": flood_type(n), "payload": {"n": n}, "queue": flood_queue(n), "max_attempts": 1}
            for n in range(start, start + BATCH)
        ]


def scrape(url: str, headers: dict[str, str] | None = None) -> str:
    response = httpx.get(url, timeout=30, headers=headers)
    assert response.status_code == 200, response.text
    return response.text


def check_small(text: str, what: str) -> dict[str, list[dict[str, str]]]:
    """Assert the exposition is small, and return each family's label sets (without ``le``:
    a histogram's buckets are one series' parts)."""
    assert len(text.encode()) < MAX_BODY_BYTES, f"{what}: /metrics is {len(text.encode())} bytes"
    assert "flood-type" not in text, what
    series: dict[str, list[dict[str, str]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        seen = set()
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k != "le"}
            key = tuple(sorted(labels.items()))
            if key not in seen:
                seen.add(key)
                series[family.name].append(labels)
    big = {name: len(sets) for name, sets in series.items() if len(sets) > MAX_SERIES_PER_FAMILY}
    assert not big, f"{what}: families over {MAX_SERIES_PER_FAMILY} series: {big}"
    return series


def values(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def failed_other(text: str) -> float:
    """Attempts of unconfigured types this worker failed, whatever their queue."""
    return sum(
        value
        for labels, value in values(text, "queue_worker_jobs_finished_total").items()
        if dict(labels)["type"] == OTHER_LABEL and dict(labels)["outcome"] == "failed"
    )


def check_worker(text: str, name: str, queues: Sequence[str]) -> None:
    for family, label_sets in check_small(text, name).items():
        if family.startswith("queue_worker_"):
            for labels in label_sets:
                assert labels.get("type", OTHER_LABEL) in {*HANDLER_TYPES, OTHER_LABEL}, labels
                assert labels.get("queue", OTHER_LABEL) in {*queues, OTHER_LABEL}, labels


def test_a_flood_of_made_up_types_and_queues_leaves_every_metrics_page_small(
    stack: Stack, empty_db_url: str
) -> None:
    stack.migrate(empty_db_url)
    api = stack.spawn_api(empty_db_url)  # API_METRICS_* left at their defaults
    queues = [["default", *served(index)] for index in range(2)]
    workers: list[Worker] = [
        stack.spawn_worker(
            empty_db_url,
            f"worker-{index}",
            {"WORKER_CONCURRENCY": "4", "WORKER_QUEUES": ",".join(queues[index])},
        )
        for index in range(2)
    ]
    stack.wait_ready(api, *workers)

    with api.client() as client:
        for batch in batches():
            response = client.post("/v1/jobs/batch", json={"jobs": batch})
            assert response.status_code == 201, response.text
        for n in range(KNOWN):
            response = client.post("/jobs", json={"type": "noop", "payload": {"n": n}})
            assert response.status_code == 201, response.text

    processed = 2 * SERVED_PER_WORKER
    expected = {"failed": processed, "completed": KNOWN, "pending": FLOOD - processed}
    stack.wait(
        lambda: job_counts(empty_db_url) == expected,
        what=f"the {processed} served flood jobs failed and {KNOWN} noop jobs completed",
        alive=[api.proc, *(w.proc for w in workers)],
        timeout_s=30,
        detail=lambda: str(job_counts(empty_db_url)),
    )
    # A worker counts an attempt once its outcome is recorded: wait for the last counts.
    worker_urls = [f"http://127.0.0.1:{w.metrics_port}/metrics" for w in workers]
    stack.wait(
        lambda: sum(failed_other(scrape(url)) for url in worker_urls) == processed,
        what=f"the workers' metrics counting {processed} failed attempts of type other",
        timeout_s=10,
    )

    # The API's first scrape: it reads the queue statistics now, after the flood.
    text = scrape(f"{api.base_url}/metrics", api.auth_headers)
    check_small(text, "queue-api")
    assert "flood-" not in text
    assert values(text, "queue_api_jobs_enqueued_total") == {
        (("queue", OTHER_LABEL), ("type", OTHER_LABEL)): FLOOD,
        (("queue", "default"), ("type", "noop")): KNOWN,
    }
    assert values(text, "queue_jobs_due") == {
        (("queue", "default"),): 0,
        (("queue", OTHER_LABEL),): FLOOD - processed,
    }
    for worker, url, worker_queues in zip(workers, worker_urls, queues, strict=True):
        check_worker(scrape(url), worker.proc.name, worker_queues)
