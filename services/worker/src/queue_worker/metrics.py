"""The worker's Prometheus metrics, served with ``/healthz`` on ``WORKER_METRICS_PORT``.

Labels stay low-cardinality: job type, queue and outcome, never a job id or payload data.
Queue depth is not here: the API reads it from the database once for every replica.
"""

from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram

from queue_core.jobs import ClaimedJob, Outcome, OutcomeKind, Rescued
from queue_core.states import JobStatus

# Job durations from a millisecond no-op to a long batch job.
DURATION_BUCKETS = (
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
# Enqueue-to-start latency: a few milliseconds when a worker is idle, seconds under a backlog.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

JOBS_STARTED = Counter(
    "queue_worker_jobs_started_total", "Attempts started by this worker.", ["type", "queue"]
)
JOBS_FINISHED = Counter(
    "queue_worker_jobs_finished_total",
    "Attempts ended, by outcome: completed, retried (failed, will run again), failed (for "
    "good), cancelled, released (handed back at shutdown), lost (lease taken away).",
    ["type", "queue", "outcome"],
)
JOBS_TIMED_OUT = Counter(
    "queue_worker_jobs_timed_out_total", "Attempts cancelled by their timeout.", ["type", "queue"]
)
JOBS_RESCUED = Counter(
    "queue_worker_jobs_rescued_total",
    "Jobs this worker's rescuer took back from a lost worker, by the status they went to.",
    ["type", "queue", "status"],
)
JOB_DURATION = Histogram(
    "queue_worker_job_duration_seconds",
    "How long an attempt's handler ran.",
    ["type", "outcome"],
    buckets=DURATION_BUCKETS,
)
START_LATENCY = Histogram(
    "queue_worker_job_start_latency_seconds",
    "From when a job was due (enqueued or scheduled) to when a worker started it.",
    ["queue"],
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge("queue_worker_jobs_in_flight", "Jobs this worker is running now.")
CONCURRENCY = Gauge(
    "queue_worker_concurrency", "WORKER_CONCURRENCY: the most jobs it runs at once."
)
HEARTBEAT_ERRORS = Counter(
    "queue_worker_heartbeat_errors_total", "Lease extensions that could not reach the database."
)
DB_RECONNECTS = Counter(
    "queue_worker_database_reconnects_total",
    "Times a component got the database back after losing it.",
    ["component"],
)


def _finished_label(outcome: Outcome, status: JobStatus | None) -> str:
    if status is None:
        return "lost"
    if outcome.kind is OutcomeKind.RELEASED:
        return "released"
    if outcome.kind in (OutcomeKind.FAILED, OutcomeKind.FAILED_FINAL):
        return "retried" if status is JobStatus.PENDING else status.value
    return status.value


class PrometheusEvents:
    """Implements queue_worker.events.WorkerEvents with the metrics above. Labelled children
    are looked up once per label set and kept: ``labels()`` costs more than the increment."""

    def __init__(self, concurrency: int) -> None:
        CONCURRENCY.set(concurrency)
        self._started: dict[tuple[str, str], Counter] = {}
        self._latency: dict[str, Histogram] = {}
        self._finished: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}

    def job_started(self, job: ClaimedJob) -> None:
        key = (job.type, job.queue)
        started = self._started.get(key)
        if started is None:
            started = self._started[key] = JOBS_STARTED.labels(type=job.type, queue=job.queue)
        started.inc()
        IN_FLIGHT.inc()
        latency = self._latency.get(job.queue)
        if latency is None:
            latency = self._latency[job.queue] = START_LATENCY.labels(queue=job.queue)
        due_at = job.scheduled_at or job.created_at
        latency.observe(max((job.started_at - due_at).total_seconds(), 0.0))

    def job_finished(
        self,
        job: ClaimedJob,
        outcome: Outcome,
        status: JobStatus | None,
        duration_s: float,
        *,
        timed_out: bool,
    ) -> None:
        IN_FLIGHT.dec()
        label = _finished_label(outcome, status)
        key = (job.type, job.queue, label)
        children = self._finished.get(key)
        if children is None:
            children = self._finished[key] = (
                JOBS_FINISHED.labels(type=job.type, queue=job.queue, outcome=label),
                JOB_DURATION.labels(type=job.type, outcome=label),
            )
        children[0].inc()
        children[1].observe(duration_s)
        if timed_out:
            JOBS_TIMED_OUT.labels(type=job.type, queue=job.queue).inc()

    def heartbeat_failed(self) -> None:
        HEARTBEAT_ERRORS.inc()

    def database_reconnected(self, component: str) -> None:
        DB_RECONNECTS.labels(component=component).inc()

    def jobs_rescued(self, rescued: Sequence[Rescued]) -> None:
        for job in rescued:
            JOBS_RESCUED.labels(type=job.type, queue=job.queue, status=job.status.value).inc()
