"""The worker's Prometheus metrics, served with ``/healthz`` on ``WORKER_METRICS_PORT``.

Labels stay low-cardinality: job type, queue and outcome, never a job id or payload data. A
job's type and queue are chosen by whoever enqueued it, so they become label values only when
the worker knows them (a type it has a handler for, a queue in WORKER_QUEUES); anything else is
``other``. A client enqueuing 20k made-up types adds one series, not 20k.
Queue depth is not here: the API reads it from the database once for every replica.

The per-job metrics are plain Python numbers, not prometheus_client metric objects. Every
``inc()`` or ``observe()`` of those takes a lock, and at some 25k no-op jobs a second the
eight of them per job were a tenth of the worker's CPU. Only the event loop's thread writes
these numbers, so they need no lock; a collector turns them into metric families when
``/metrics`` is scraped (from the side port's thread, see http.py). The rare metrics stay
ordinary prometheus_client objects.
"""

import contextlib
import os
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import accumulate
from typing import Generic, TypeVar

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    Sample,
)
from prometheus_client.utils import floatToGoString

from queue_core import metric_labels
from queue_core.jobs import ClaimedJob, Outcome, OutcomeKind, Rescued
from queue_core.queue_events import REPAIR_REASONS, RepairReason
from queue_core.retention import RoundResult
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

# The same switch prometheus_client reads for its own metrics, so that every counter and
# histogram on /metrics has its ``_created`` series, or none does.
_CREATED_SERIES = os.environ.get("PROMETHEUS_DISABLE_CREATED_SERIES", "False").lower() not in (
    "true",
    "1",
    "t",
)
# prometheus_client's own spelling of a bucket bound ("1.0", "0.001", "+Inf"): the ``le``
# labels must match what its Histogram wrote, or dashboards' bucket selectors break. The
# annotation gives its untyped function a type.
_le_label: Callable[[float], str] = floatToGoString

_IN_FLIGHT_NAME = "queue_worker_jobs_in_flight"
_IN_FLIGHT_HELP = "Jobs this worker is running now."

_Key = TypeVar("_Key", bound=tuple[str, ...])

# The label value of every type or queue outside the worker's own (see the module docstring),
# the same as the API's.
OTHER_LABEL = metric_labels.OTHER_LABEL


class _CounterCells(Generic[_Key]):
    """A counter's values by label values. The event loop writes ``values`` directly."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.values: dict[_Key, int] = {}
        self._created: dict[_Key, float] = {}

    def new(self, key: _Key) -> int:
        """A label set's first count, 0. Its created time is stored before any count, so a
        scrape that sees the count finds the time too."""
        self._created[key] = time.time()
        return 0

    def family(self) -> CounterMetricFamily:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        # Copies are one C-level operation each, atomic under the GIL, while the event loop
        # may be adding a label set. Values first: a key in them is in the later copy of
        # created too (see new()).
        values = dict(self.values)
        created = dict(self._created)
        for key, count in values.items():
            family.add_metric(key, count, created=created[key] if _CREATED_SERIES else None)
        return family

    def describe(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)


class _HistogramCells(Generic[_Key]):
    """A histogram by label values: per label set one list of per-bucket (not cumulative)
    counts, the +Inf bucket's last, then the sum. The event loop writes ``values`` directly:
    ``cell[bisect_left(bounds, v)] += 1; cell[-1] += v``."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: tuple[str, ...],
        buckets: Sequence[float],
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        # bisect_left gives the first bound >= v (Prometheus buckets are ``le``), and
        # len(bounds), the +Inf bucket, for a value above them all.
        self.bounds = tuple(float(bound) for bound in buckets)
        self._le = (*(_le_label(bound) for bound in self.bounds), _le_label(float("inf")))
        self.values: dict[_Key, list[float]] = {}
        self._created: dict[_Key, float] = {}

    def new(self, key: _Key) -> list[float]:
        """A label set's empty cell, stored (after its created time, as in _CounterCells)."""
        self._created[key] = time.time()
        cell = [0.0] * (len(self._le) + 1)
        self.values[key] = cell
        return cell

    def family(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        values = dict(self.values)  # atomic copies, as in _CounterCells.family
        created = dict(self._created)
        for key, cell in values.items():
            # One copy of the cell, so its buckets and sum are from the same moment (give or
            # take the observation between a bucket's increment and the sum's).
            counts = list(cell)
            total = counts.pop()
            # Exposed cumulative: each bucket counts everything at or below its bound, and
            # +Inf, everything, which HistogramMetricFamily also reports as _count.
            family.add_metric(key, list(zip(self._le, accumulate(counts), strict=True)), total)
            if _CREATED_SERIES:
                # HistogramMetricFamily has no created argument; this is the sample that
                # prometheus_client's Histogram adds.
                labels = dict(zip(self.labelnames, key, strict=True))
                family.samples.append(Sample(f"{self.name}_created", labels, created[key]))
        return family

    def describe(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)


class _JobStats:
    """The per-job metrics, written by PrometheusEvents and exposed as a collector.

    One writer: the event loop's thread. The scrape, from another thread, reads by copying
    (see the ``family`` methods), which the GIL makes safe; a free-threaded Python would need
    a lock here."""

    def __init__(self) -> None:
        self.started = _CounterCells[tuple[str, str]](
            "queue_worker_jobs_started_total", "Attempts started by this worker.", ("type", "queue")
        )
        self.finished = _CounterCells[tuple[str, str, str]](
            "queue_worker_jobs_finished_total",
            "Attempts ended, by outcome: completed, retried (failed, will run again), failed "
            "(for good), cancelled, released (handed back at shutdown), snoozed (to run later, "
            "the attempt given back), lost (lease taken away).",
            ("type", "queue", "outcome"),
        )
        self.timed_out = _CounterCells[tuple[str, str]](
            "queue_worker_jobs_timed_out_total",
            "Attempts cancelled by their timeout.",
            ("type", "queue"),
        )
        self.duration = _HistogramCells[tuple[str, str]](
            "queue_worker_job_duration_seconds",
            "How long an attempt's handler ran.",
            ("type", "outcome"),
            DURATION_BUCKETS,
        )
        self.start_latency = _HistogramCells[tuple[str]](
            "queue_worker_job_start_latency_seconds",
            "From when a job was due (enqueued or scheduled) to when a worker started it.",
            ("queue",),
            LATENCY_BUCKETS,
        )
        self.in_flight = 0

    def collect(self) -> Iterator[Metric]:
        yield self.started.family()
        yield self.finished.family()
        yield self.timed_out.family()
        yield self.duration.family()
        yield self.start_latency.family()
        # An int attribute: read in one step, no copy needed.
        yield GaugeMetricFamily(_IN_FLIGHT_NAME, _IN_FLIGHT_HELP, value=self.in_flight)

    def describe(self) -> Iterator[Metric]:
        """The names, for the registry's duplicate check, without a scrape's copying."""
        yield self.started.describe()
        yield self.finished.describe()
        yield self.timed_out.describe()
        yield self.duration.describe()
        yield self.start_latency.describe()
        yield GaugeMetricFamily(_IN_FLIGHT_NAME, _IN_FLIGHT_HELP)


# One per process, like the module-level metrics below: every PrometheusEvents adds to it.
_STATS = _JobStats()
REGISTRY.register(_STATS)

JOBS_RESCUED = Counter(
    "queue_worker_jobs_rescued_total",
    "Jobs this worker's rescuer took back from a lost worker, by the status they went to.",
    ["type", "queue", "status"],
)
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
SERVICE_ERRORS = Counter(
    "queue_worker_service_errors_total",
    "Errors that ended a supervised service's run: transient (database away, deadlock) or "
    "crash (anything else, logged as service_crashed).",
    ["service", "kind"],
)
SERVICE_RESTARTS = Counter(
    "queue_worker_service_restarts_total",
    "Times the supervisor restarted a service after an error.",
    ["service"],
)
KEYED_TURN_TIMEOUTS = Counter(
    "queue_worker_keyed_claim_turn_timeouts_total",
    "Keyed claims that waited 5 s for their turn (another claimer held it) and took plain "
    "jobs alone.",
)
DEPENDANTS_NOT_SETTLED = Counter(
    "queue_worker_dependants_not_settled_total",
    "Finished jobs whose dependants could not be told of the outcome (a lock held too long, "
    "the database away); the sweep settles them later.",
)
DEPENDANTS_REPAIRED = Counter(
    "queue_worker_dependants_repaired_total",
    "Waiting jobs the rescuer's repair sweep found waiting for ever after a hand edit, by "
    "reason: orphaned (a dependency no longer exists: failed), miscounted (no dependency left "
    "to complete: made due).",
    ["reason"],
)
for _reason in REPAIR_REASONS:  # both series from startup, at 0: increase() sees the first
    DEPENDANTS_REPAIRED.labels(reason=_reason)
SERVICE_UP = Gauge(
    "queue_worker_service_up",
    "1 while a supervised service runs, 0 while it waits to be restarted or is stopped.",
    ["service"],
)


def _finished_label(kind: OutcomeKind, status: JobStatus) -> str:
    """The ``outcome`` label of an attempt whose end was recorded (``lost`` when it was not)."""
    if kind is OutcomeKind.RELEASED:
        return "released"
    if kind is OutcomeKind.SNOOZED:
        return "snoozed"
    if kind in (OutcomeKind.FAILED, OutcomeKind.FAILED_FINAL):
        return "retried" if status is JobStatus.PENDING else status.value
    return status.value


# Every label computed once: on the per-job path one dict lookup costs a sixth of what the
# comparisons with enum members and ``.value`` do.
_FINISHED_LABELS = {
    (kind, status): _finished_label(kind, status) for kind in OutcomeKind for status in JobStatus
}


class PrometheusEvents:
    """Implements queue_worker.events.WorkerEvents with the metrics above. Call it from the
    event loop's thread only: the per-job numbers are written without a lock."""

    def __init__(self, concurrency: int, *, types: Iterable[str], queues: Iterable[str]) -> None:
        """``types`` and ``queues``: the label values allowed, the rest count as ``other``."""
        CONCURRENCY.set(concurrency)
        # Looked up once per job: a dict's get is the cheapest bounded mapping there is.
        self._type_label = {name: name for name in types}
        self._queue_label = {name: name for name in queues}
        self._stats = stats = _STATS
        # The dicts and bounds the hot path touches, bound once to save attribute lookups.
        self._started = stats.started.values
        self._finished = stats.finished.values
        self._duration = stats.duration.values
        self._duration_bounds = stats.duration.bounds
        self._latency = stats.start_latency.values
        self._latency_bounds = stats.start_latency.bounds

    def job_started(self, job: ClaimedJob) -> None:
        stats = self._stats
        queue_label = self._queue_label.get(job.queue, OTHER_LABEL)
        key = (self._type_label.get(job.type, OTHER_LABEL), queue_label)
        started = self._started
        count = started.get(key)
        if count is None:
            count = stats.started.new(key)
        started[key] = count + 1
        stats.in_flight += 1
        queue = (queue_label,)
        cell = self._latency.get(queue)
        if cell is None:
            cell = stats.start_latency.new(queue)
        latency = job.waited_s
        cell[bisect_left(self._latency_bounds, latency)] += 1
        cell[-1] += latency

    def job_finished(
        self,
        job: ClaimedJob,
        outcome: Outcome,
        status: JobStatus | None,
        duration_s: float,
        *,
        timed_out: bool,
    ) -> None:
        stats = self._stats
        stats.in_flight -= 1
        label = "lost" if status is None else _FINISHED_LABELS[outcome.kind, status]
        type_label = self._type_label.get(job.type, OTHER_LABEL)
        queue_label = self._queue_label.get(job.queue, OTHER_LABEL)
        key = (type_label, queue_label, label)
        finished = self._finished
        count = finished.get(key)
        if count is None:
            count = stats.finished.new(key)
        finished[key] = count + 1
        by_type = (type_label, label)
        cell = self._duration.get(by_type)
        if cell is None:
            cell = stats.duration.new(by_type)
        cell[bisect_left(self._duration_bounds, duration_s)] += 1
        cell[-1] += duration_s
        if timed_out:
            timed_out_key = (type_label, queue_label)
            values = stats.timed_out.values
            count = values.get(timed_out_key)
            if count is None:
                count = stats.timed_out.new(timed_out_key)
            values[timed_out_key] = count + 1

    def heartbeat_failed(self) -> None:
        HEARTBEAT_ERRORS.inc()

    def database_reconnected(self, component: str) -> None:
        DB_RECONNECTS.labels(component=component).inc()

    def jobs_rescued(self, rescued: Sequence[Rescued]) -> None:
        # A rescuer takes back jobs of any queue and type, not only this worker's.
        for job in rescued:
            JOBS_RESCUED.labels(
                type=self._type_label.get(job.type, OTHER_LABEL),
                queue=self._queue_label.get(job.queue, OTHER_LABEL),
                status=job.status.value,
            ).inc()

    def service_up(self, service: str, *, up: bool) -> None:
        SERVICE_UP.labels(service=service).set(1 if up else 0)
        # Every series of the service exists from its start, at 0: increase() and alerts then
        # see its first error, which a series born at 1 would hide.
        for kind in ("transient", "crash"):
            SERVICE_ERRORS.labels(service=service, kind=kind)
        SERVICE_RESTARTS.labels(service=service)

    def service_failed(self, service: str, kind: str) -> None:
        SERVICE_ERRORS.labels(service=service, kind=kind).inc()

    def service_restarted(self, service: str) -> None:
        SERVICE_RESTARTS.labels(service=service).inc()

    def keyed_claim_turn_timed_out(self) -> None:
        KEYED_TURN_TIMEOUTS.inc()

    def dependants_not_settled(self, jobs: int) -> None:
        DEPENDANTS_NOT_SETTLED.inc(jobs)

    def dependants_repaired(self, reason: RepairReason, jobs: int) -> None:
        DEPENDANTS_REPAIRED.labels(reason=reason).inc(jobs)


# -- retention (queue_worker.retention) --------------------------------------------------------

RETENTION_DELETED = Counter(
    "queue_worker_retention_deleted_total",
    "Finished jobs this worker deleted past their retention, by status.",
    ["status"],
)
RETENTION_BATCHES = Counter(
    "queue_worker_retention_batches_total",
    "Delete statements this worker's retention ran (each its own short transaction).",
    ["status"],
)
RETENTION_ROUNDS = Counter(
    "queue_worker_retention_rounds_total",
    "Retention rounds by result: worked (this replica held the lock), skipped (another did), "
    "failed (an error ended it).",
    ["result"],
)
RETENTION_OLDEST = Gauge(
    "queue_worker_retention_oldest_finished_seconds",
    "How long ago the oldest (first created) job of each final status finished, 0 when there "
    "is none; reported only by the replica whose retention round last did the work.",
    ["status"],
)
RETENTION_SECONDS = Gauge(
    "queue_worker_retention_seconds",
    "WORKER_RETENTION_*_S: how long finished jobs of each status are kept, 0 for good.",
    ["status"],
)


class PrometheusRetentionEvents:
    """Implements queue_worker.retention.RetentionEvents with the metrics above."""

    def __init__(self, retention_s: Mapping[JobStatus, float | None]) -> None:
        for status, seconds in retention_s.items():
            RETENTION_SECONDS.labels(status=status.value).set(seconds or 0)
            RETENTION_DELETED.labels(status=status.value)
            RETENTION_BATCHES.labels(status=status.value)
        for result in ("worked", "skipped", "failed"):
            RETENTION_ROUNDS.labels(result=result)
        self._statuses = [status.value for status in retention_s]

    def retention_round(self, result: RoundResult) -> None:
        if not result.locked:
            RETENTION_ROUNDS.labels(result="skipped").inc()
            # Another replica does the work: only its ages are current.
            for status in self._statuses:
                with contextlib.suppress(KeyError):
                    RETENTION_OLDEST.remove(status)
            return
        RETENTION_ROUNDS.labels(result="worked").inc()
        for status, count in result.deleted.items():
            RETENTION_DELETED.labels(status=status.value).inc(count)
        for status, count in result.batches.items():
            RETENTION_BATCHES.labels(status=status.value).inc(count)
        for status, age in result.oldest_s.items():
            RETENTION_OLDEST.labels(status=status.value).set(age or 0.0)

    def retention_failed(self) -> None:
        RETENTION_ROUNDS.labels(result="failed").inc()
