"""The per-job metrics are plain numbers behind a collector (queue_worker.metrics): /metrics must
show what prometheus_client's own Counter, Histogram and Gauge showed for the same events, since
dashboards and alerts select on those names, labels and buckets."""

import sys
import threading
import uuid

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from queue_core.jobs import ClaimedJob, Outcome, OutcomeKind
from queue_core.states import JobStatus
from queue_worker import metrics
from queue_worker.metrics import DURATION_BUCKETS, PrometheusEvents

# The label values the worker allows (its handlers' names, its WORKER_QUEUES); any other type or
# queue is counted as "other".
TYPES = ("greet", "report", *(f"type{k}" for k in range(500)))
QUEUES = ("default", "slow")

# (outcome kind, recorded status, the outcome label the metrics must show)
ENDINGS = [
    (OutcomeKind.COMPLETED, JobStatus.COMPLETED, "completed"),
    (OutcomeKind.FAILED, JobStatus.PENDING, "retried"),
    (OutcomeKind.FAILED, JobStatus.FAILED, "failed"),
    (OutcomeKind.FAILED_FINAL, JobStatus.FAILED, "failed"),
    (OutcomeKind.CANCELLED, JobStatus.CANCELLED, "cancelled"),
    (OutcomeKind.RELEASED, JobStatus.PENDING, "released"),
    (OutcomeKind.COMPLETED, None, "lost"),
]
# On bucket bounds, between them, below the first and above the last.
DURATIONS = [0.0, 0.001, 0.0049, 0.005, 0.3, 1.0, 2.5, 899.0, 900.0, 901.0, 5000.0]
LATENCIES = [0.0, 0.001, 0.0025, 0.7, 60.0, 61.0]
# The bounds dashboards and alerts select on, written out rather than imported.
PINNED_DURATION_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    900,
)
PINNED_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
)


def _job(job_type: str, queue: str, latency_s: float) -> ClaimedJob:
    return ClaimedJob(
        id=uuid.uuid4(),
        type=job_type,
        payload={},
        queue=queue,
        priority=0,
        attempt=1,
        max_attempts=3,
        timeout_s=None,
        waited_s=latency_s,
    )


@pytest.fixture(name="registry")
def fx_registry(monkeypatch: pytest.MonkeyPatch) -> CollectorRegistry:
    """Fresh per-job numbers, registered alone: PrometheusEvents made in the test write them."""
    stats = metrics._JobStats()  # noqa: SLF001 - a clean slate instead of the process-wide one
    monkeypatch.setattr(metrics, "_STATS", stats)
    registry = CollectorRegistry()
    registry.register(stats)
    return registry


class _Reference:
    """The metrics as prometheus_client's classes made them before, with literal help texts:
    a change to a name, help text, label or bucket shows up as a difference."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.started = Counter(
            "queue_worker_jobs_started_total",
            "Attempts started by this worker.",
            ["type", "queue"],
            registry=reg,
        )
        self.finished = Counter(
            "queue_worker_jobs_finished_total",
            "Attempts ended, by outcome: completed, retried (failed, will run again), failed "
            "(for good), cancelled, released (handed back at shutdown), snoozed (to run later, "
            "the attempt given back), lost (lease taken away).",
            ["type", "queue", "outcome"],
            registry=reg,
        )
        self.timed_out = Counter(
            "queue_worker_jobs_timed_out_total",
            "Attempts cancelled by their timeout.",
            ["type", "queue"],
            registry=reg,
        )
        self.duration = Histogram(
            "queue_worker_job_duration_seconds",
            "How long an attempt's handler ran.",
            ["type", "outcome"],
            buckets=PINNED_DURATION_BUCKETS,
            registry=reg,
        )
        self.latency = Histogram(
            "queue_worker_job_start_latency_seconds",
            "From when a job was due (enqueued or scheduled) to when a worker started it.",
            ["queue"],
            buckets=PINNED_LATENCY_BUCKETS,
            registry=reg,
        )
        self.in_flight = Gauge(
            "queue_worker_jobs_in_flight", "Jobs this worker is running now.", registry=reg
        )


def _exposed(registry: CollectorRegistry) -> dict[str, tuple[str, str, list[tuple[object, ...]]]]:
    """Each family on /metrics as Prometheus parses it: help, type and samples, in order. The
    ``_created`` timestamps differ between two runs, so only their presence is compared."""
    families = text_string_to_metric_families(generate_latest(registry).decode())
    return {
        family.name: (
            family.documentation,
            family.type,
            [
                (s.name, sorted(s.labels.items()), None if s.name.endswith("_created") else s.value)
                for s in family.samples
            ],
        )
        for family in families
    }


def test_the_exposition_is_what_prometheus_client_metrics_showed(
    registry: CollectorRegistry,
) -> None:
    ref = _Reference()
    # Two instances, as two runners in one process: they add to the same numbers.
    events = [
        PrometheusEvents(4, types=TYPES, queues=QUEUES),
        PrometheusEvents(4, types=TYPES, queues=QUEUES),
    ]
    i = 0
    for job_type in ("greet", "report"):
        for queue in ("default", "slow"):
            for duration_s in DURATIONS:
                kind, status, label = ENDINGS[i % len(ENDINGS)]
                latency_s = LATENCIES[i % len(LATENCIES)]
                timed_out = i % 4 == 0
                job = _job(job_type, queue, latency_s)
                ev = events[i % 2]
                ev.job_started(job)
                ev.job_finished(job, Outcome(job.id, kind), status, duration_s, timed_out=timed_out)

                ref.started.labels(type=job_type, queue=queue).inc()
                ref.latency.labels(queue=queue).observe(latency_s)
                ref.finished.labels(type=job_type, queue=queue, outcome=label).inc()
                ref.duration.labels(type=job_type, outcome=label).observe(duration_s)
                if timed_out:
                    ref.timed_out.labels(type=job_type, queue=queue).inc()
                i += 1
    events[0].job_started(_job("greet", "default", 0.01))  # still running
    ref.started.labels(type="greet", queue="default").inc()
    ref.latency.labels(queue="default").observe(0.01)
    ref.in_flight.inc()

    assert _exposed(registry) == _exposed(ref.registry)


def test_histogram_buckets_are_cumulative_and_inf_counts_every_observation(
    registry: CollectorRegistry,
) -> None:
    events = PrometheusEvents(1, types=TYPES, queues=QUEUES)
    for duration_s in (0.001, 0.0011, 900.0, 901.0):
        job = _job("greet", "default", 0.0)
        events.job_started(job)
        outcome = Outcome(job.id, OutcomeKind.COMPLETED)
        events.job_finished(job, outcome, JobStatus.COMPLETED, duration_s, timed_out=False)

    def bucket(le: str) -> float | None:
        return registry.get_sample_value(
            "queue_worker_job_duration_seconds_bucket",
            {"type": "greet", "outcome": "completed", "le": le},
        )

    # A value on a bound is in that bound's bucket (``le``); one above them all only in +Inf.
    assert [bucket("0.001"), bucket("0.005"), bucket("900.0"), bucket("+Inf")] == [1, 2, 3, 4]
    labels = {"type": "greet", "outcome": "completed"}
    count = registry.get_sample_value("queue_worker_job_duration_seconds_count", labels)
    total = registry.get_sample_value("queue_worker_job_duration_seconds_sum", labels)
    assert count == 4
    assert total == pytest.approx(0.001 + 0.0011 + 900.0 + 901.0)
    assert registry.get_sample_value("queue_worker_jobs_in_flight") == 0


def _totals(registry: CollectorRegistry) -> tuple[float, float]:
    """Jobs started and durations observed, over every label set, from one collect."""
    started = observed = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == "queue_worker_jobs_started_total":
                started += sample.value
            elif sample.name == "queue_worker_job_duration_seconds_count":
                observed += sample.value
    return started, observed


def test_a_scrape_from_another_thread_is_safe_while_jobs_run(
    registry: CollectorRegistry,
) -> None:
    events = PrometheusEvents(1, types=TYPES, queues=QUEUES)
    # New label sets keep appearing while the scrapes run: a scrape that iterated the live
    # dicts instead of a copy would fail on "dictionary changed size during iteration", and
    # one that found a count before its created time, on a KeyError.
    jobs = [_job(f"type{k}", "default", 0.002) for k in range(500)]
    per_type = 100
    done = threading.Event()

    def run_jobs() -> None:
        try:
            for n in range(len(jobs) * per_type):
                job = jobs[n // per_type]
                events.job_started(job)
                duration_s = DURATION_BUCKETS[n % len(DURATION_BUCKETS)] * 0.9
                outcome = Outcome(job.id, OutcomeKind.COMPLETED)
                events.job_finished(job, outcome, JobStatus.COMPLETED, duration_s, timed_out=False)
        finally:
            done.set()

    # Switch threads as often as the interpreter allows, so scrapes land mid-update.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        writer = threading.Thread(target=run_jobs)
        writer.start()
        last = (0.0, 0.0)
        scrapes = 0
        while not done.is_set():
            totals = _totals(registry)
            assert totals[0] >= last[0]
            assert totals[1] >= last[1]
            last = totals
            scrapes += 1
        writer.join()
    finally:
        sys.setswitchinterval(interval)

    assert scrapes > 1
    assert _totals(registry) == (len(jobs) * per_type, len(jobs) * per_type)


def test_the_default_registry_serves_the_per_job_metrics() -> None:
    """The side port serves the default registry: the collector is in it, once per process,
    however many PrometheusEvents there are."""
    before = REGISTRY.get_sample_value(
        "queue_worker_jobs_started_total", {"type": "greet", "queue": "default"}
    )
    for events in (
        PrometheusEvents(2, types=TYPES, queues=QUEUES),
        PrometheusEvents(2, types=TYPES, queues=QUEUES),
    ):
        job = _job("greet", "default", 0.0)
        events.job_started(job)
        outcome = Outcome(job.id, OutcomeKind.COMPLETED)
        events.job_finished(job, outcome, JobStatus.COMPLETED, 0.01, timed_out=True)

    after = REGISTRY.get_sample_value(
        "queue_worker_jobs_started_total", {"type": "greet", "queue": "default"}
    )
    assert after == (before or 0) + 2
    text = generate_latest(REGISTRY).decode()
    for name, kind in [
        ("queue_worker_jobs_started_total", "counter"),
        ("queue_worker_jobs_finished_total", "counter"),
        ("queue_worker_jobs_timed_out_total", "counter"),
        ("queue_worker_job_duration_seconds", "histogram"),
        ("queue_worker_job_start_latency_seconds", "histogram"),
        ("queue_worker_jobs_in_flight", "gauge"),
        ("queue_worker_concurrency", "gauge"),
    ]:
        assert f"# TYPE {name} {kind}\n" in text


def test_types_and_queues_the_worker_does_not_know_are_counted_as_other(
    registry: CollectorRegistry,
) -> None:
    events = PrometheusEvents(2, types=("greet",), queues=("default",))
    for job_type, queue in [("greet", "default"), ("made-up-1", "default"), ("made-up-2", "x")]:
        job = _job(job_type, queue, 0.0)
        events.job_started(job)
        outcome = Outcome(job.id, OutcomeKind.FAILED_FINAL)
        events.job_finished(job, outcome, JobStatus.FAILED, 0.01, timed_out=True)

    samples = [
        sample
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
    ]
    assert {s.labels["type"] for s in samples if "type" in s.labels} == {"greet", "other"}
    assert {s.labels["queue"] for s in samples if "queue" in s.labels} == {"default", "other"}
    started = {
        (s.labels["type"], s.labels["queue"]): s.value
        for s in samples
        if s.name == "queue_worker_jobs_started_total"
    }
    assert started == {("greet", "default"): 1, ("other", "default"): 1, ("other", "other"): 1}


def test_the_failures_the_queue_works_around_are_counted() -> None:
    """queue_core reports them through QueueEvents (the worker gives its Queue these events)."""
    events = PrometheusEvents(2, types=TYPES, queues=QUEUES)
    names = (
        "queue_worker_keyed_claim_turn_timeouts_total",
        "queue_worker_dependants_not_settled_total",
    )
    before = [REGISTRY.get_sample_value(name) or 0 for name in names]

    repaired = "queue_worker_dependants_repaired_total"
    repaired_before = {
        reason: REGISTRY.get_sample_value(repaired, {"reason": reason})
        for reason in ("orphaned", "miscounted")
    }
    assert None not in repaired_before.values()  # both exist from startup, at 0 or more

    events.keyed_claim_turn_timed_out()
    events.dependants_not_settled(3)
    events.dependants_repaired("orphaned", 2)
    events.dependants_repaired("miscounted", 5)

    assert [REGISTRY.get_sample_value(name) for name in names] == [before[0] + 1, before[1] + 3]
    assert {
        reason: REGISTRY.get_sample_value(repaired, {"reason": reason})
        for reason in ("orphaned", "miscounted")
    } == {
        "orphaned": (repaired_before["orphaned"] or 0) + 2,
        "miscounted": (repaired_before["miscounted"] or 0) + 5,
    }
