"""The API's Prometheus metrics, served on ``/metrics``.

- HTTP: request counts, durations and errors from ``request_telemetry``, labelled by route
  template (never the raw path, so job ids never become label values), method and status.
- ``queue_api_jobs_enqueued_total{type,queue}``.
- Queue state read from PostgreSQL at scrape time, cached for ``STATS_TTL_S`` so that several
  Prometheus servers or a fast scrape interval cost one query: due, scheduled and running jobs
  and the oldest due job's age per queue, the oldest open transaction in the database, and the
  jobs table's size on disk, dead rows and last vacuum (catalogue reads, never a row of jobs).
  Only the API exports these (one source of truth, not every worker replica).

A job's type and queue are chosen by whoever enqueues it, so they become label values only when
they are configured (``API_METRICS_JOB_TYPES``, ``API_METRICS_QUEUES``, passed to
:func:`configure_labels` by ``create_app``); any other is ``other``. A client enqueuing 20k
made-up types in 20k made-up queues adds one series to each family, not 20k. The Prometheus
registry is one per process, so the labels are too: the last app built sets them.
"""

import math
import time
from collections.abc import Iterable, Iterator
from typing import Protocol

from litestar import get
from litestar.di import NamedDependency
from litestar.exceptions import PermissionDeniedException
from litestar.plugins.prometheus import PrometheusController
from litestar.response import Response
from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from queue_api.auth import requires
from queue_api.context import RequestContext
from queue_core.errors import TransientDatabaseError
from queue_core.jobs import JobsTableStats, QueueStats
from queue_core.keys import Scope
from queue_core.log import get_logger
from queue_core.metric_labels import OTHER_LABEL
from queue_core.queue import Queue
from queue_core.queue_events import RepairReason

log = get_logger("queue_api.metrics")

STATS_TTL_S = 5.0

JOBS_ENQUEUED = Counter(
    "queue_api_jobs_enqueued_total",
    "Jobs accepted by the API; types and queues not configured for metrics are 'other'.",
    ["type", "queue"],
)

AUTH_ENABLED = Gauge(
    "queue_api_auth_enabled",
    "1 when every request but the probes needs an API key; 0 when API_AUTH=off and anyone who "
    "can reach the API may do anything.",
)

DEPENDANTS_NOT_SETTLED = Counter(
    "queue_api_dependants_not_settled_total",
    "Jobs cancelled or deleted through the API whose dependants could not be told of it (a "
    "lock held too long, the database away); the workers' sweep settles them later.",
)


class PrometheusQueueEvents:
    """The API's :class:`~queue_core.queue_events.QueueEvents`: it claims no jobs and runs no
    sweep, so only its cancels and deletes can fail to settle dependants."""

    def keyed_claim_turn_timed_out(self) -> None:
        pass

    def dependants_not_settled(self, jobs: int) -> None:
        DEPENDANTS_NOT_SETTLED.inc(jobs)

    def dependants_repaired(self, reason: RepairReason, jobs: int) -> None:
        pass  # the workers' rescuer runs the repair sweep, never the API


class EnqueuedJob(Protocol):
    """What :func:`count_enqueued` reads of a job: a ``JobCreate`` is one."""

    @property
    def type(self) -> str: ...

    @property
    def queue(self) -> str: ...


class _EnqueuedCounter:
    """``queue_api_jobs_enqueued_total`` behind the label bounds. One writer, the event loop."""

    def __init__(self) -> None:
        # Unconfigured, every name is "other": bounded before create_app has run, too.
        self._type_label: dict[str, str] = {}
        self._queue_label: dict[str, str] = {}
        # The counter's children by label values: at most (types + 1) x (queues + 1) of them.
        # Looking one up here is a dict get, where Counter.labels() converts the values to str
        # and takes a lock on every call.
        self._children: dict[tuple[str, str], Counter] = {}

    def configure(self, job_types: Iterable[str], queues: Iterable[str]) -> None:
        self._type_label = {name: name for name in job_types}
        self._queue_label = {name: name for name in queues}
        self._children = {}

    def count(self, jobs: Iterable[EnqueuedJob]) -> None:
        type_label = self._type_label
        queue_label = self._queue_label
        counts: dict[tuple[str, str], int] = {}
        for job in jobs:
            key = (type_label.get(job.type, OTHER_LABEL), queue_label.get(job.queue, OTHER_LABEL))
            counts[key] = counts.get(key, 0) + 1
        for key, count in counts.items():
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = JOBS_ENQUEUED.labels(*key)
            child.inc(count)


_ENQUEUED = _EnqueuedCounter()


def count_enqueued(jobs: Iterable[EnqueuedJob]) -> None:
    """Count jobs the API has just stored in ``queue_api_jobs_enqueued_total``: per job two
    dict lookups, then one increment per label pair (one per request, usually)."""
    _ENQUEUED.count(jobs)


class QueueStatsCollector(Collector):
    """Exposes the last queue statistics read from the database: one series per configured
    queue and one ``other`` for all the rest (counts summed, the oldest age kept), all of them
    from the first successful read on, with zeros when a queue is empty, so that series do not
    vanish when a queue drains. Their number is fixed by the configuration, never by the data.

    A failed read keeps the last values, sets ``queue_database_up`` to 0 and logs one line;
    /metrics still answers. The failure is cached like a result, so a broken query is tried
    (and logged) at most once per ``STATS_TTL_S``, however often Prometheus scrapes."""

    def __init__(self) -> None:
        self._queue_label: dict[str, str] = {}
        self._stats: dict[str, QueueStats] = {}
        self._oldest_transaction_age_s: float | None = None
        self._table: JobsTableStats | None = None
        self._read_at = -math.inf
        self.up = False

    def configure(self, queues: Iterable[str]) -> None:
        """The queues named in labels. What was read under other labels is forgotten: the next
        scrape reads again."""
        self._queue_label = {name: name for name in queues}
        self._stats = {}
        self._oldest_transaction_age_s = None
        self._table = None
        self._read_at = -math.inf
        self.up = False

    async def refresh_if_stale(self, queue: Queue) -> None:
        if time.monotonic() - self._read_at < STATS_TTL_S:
            return
        # Stamped before the query, so that scrapes arriving while it runs use the last values
        # instead of sending the same query again.
        self._read_at = time.monotonic()
        try:
            by_label = self._by_label(await queue.stats())
            oldest_transaction = float(await queue.oldest_transaction_age_s())
            table = await queue.jobs_table_stats()
        except TransientDatabaseError as exc:
            # Its message names the error's class only, never a value from a row.
            log.warning("queue_stats_unavailable", error=str(exc))
            self.up = False
            return
        except Exception as exc:  # noqa: BLE001 - a scrape must answer whatever broke; logged
            # No message, no traceback: a driver's message can quote a value from a row. The
            # class and the SQLSTATE (asyncpg's errors carry one) say what broke.
            log.error(  # noqa: TRY400 - see above
                "queue_stats_failed",
                error_type=type(exc).__name__,
                sqlstate=getattr(exc, "sqlstate", None),
            )
            self.up = False
            return
        self._stats = by_label
        self._oldest_transaction_age_s = oldest_transaction
        self._table = table
        self.up = True

    def _by_label(self, stats: Iterable[QueueStats]) -> dict[str, QueueStats]:
        """Every configured queue and ``other``, in label order. int() and float() check each
        value here, so that an odd row fails the refresh and never the rendering of /metrics."""
        totals = {label: [0, 0, 0, 0.0] for label in sorted({*self._queue_label, OTHER_LABEL})}
        queue_label = self._queue_label
        for s in stats:
            total = totals[queue_label.get(s.queue, OTHER_LABEL)]
            total[0] += int(s.due)
            total[1] += int(s.scheduled)
            total[2] += int(s.running)
            total[3] = max(total[3], float(s.oldest_due_age_s))
        return {
            label: QueueStats(label, int(due), int(scheduled), int(running), age)
            for label, (due, scheduled, running, age) in totals.items()
        }

    def collect(self) -> Iterable[Metric]:
        yield from self._queue_metrics()
        up = GaugeMetricFamily(
            "queue_database_up",
            "1 when the last statistics query succeeded; 0 when PostgreSQL could not be reached "
            "or the query failed (logged as queue_stats_unavailable or queue_stats_failed).",
        )
        up.add_metric([], 1.0 if self.up else 0.0)
        yield up
        if self._oldest_transaction_age_s is not None:
            oldest = GaugeMetricFamily(
                "queue_database_oldest_transaction_age_seconds",
                "Age of the oldest open transaction in the queue's database; a long one "
                "blocks vacuum and bloats the jobs table.",
            )
            oldest.add_metric([], self._oldest_transaction_age_s)
            yield oldest
        if self._table is not None:
            yield from _table_metrics(self._table)

    def _queue_metrics(self) -> Iterator[Metric]:
        families = {
            "due": GaugeMetricFamily(
                "queue_jobs_due", "Pending jobs that are due now, per queue.", labels=["queue"]
            ),
            "scheduled": GaugeMetricFamily(
                "queue_jobs_scheduled",
                "Pending jobs due later (scheduled or backing off), per queue.",
                labels=["queue"],
            ),
            "running": GaugeMetricFamily(
                "queue_jobs_running", "Jobs leased to a worker, per queue.", labels=["queue"]
            ),
            "age": GaugeMetricFamily(
                "queue_oldest_due_job_age_seconds",
                "How long the oldest due job has waited to start, per queue.",
                labels=["queue"],
            ),
        }
        for name, s in self._stats.items():
            families["due"].add_metric([name], s.due)
            families["scheduled"].add_metric([name], s.scheduled)
            families["running"].add_metric([name], s.running)
            families["age"].add_metric([name], s.oldest_due_age_s)
        yield from families.values()


def _table_metrics(table: JobsTableStats) -> Iterator[Metric]:
    size = GaugeMetricFamily(
        "queue_jobs_table_bytes",
        "The jobs table's size on disk, by part: heap (the rows), toast (large payloads and "
        "results stored apart) and indexes.",
        labels=["part"],
    )
    size.add_metric(["heap"], table.heap_bytes)
    size.add_metric(["toast"], table.toast_bytes)
    size.add_metric(["indexes"], table.index_bytes)
    yield size
    yield GaugeMetricFamily(
        "queue_jobs_table_live_tuples",
        "Live rows in the jobs table, as PostgreSQL's statistics estimate them.",
        value=table.live_tuples,
    )
    yield GaugeMetricFamily(
        "queue_jobs_table_dead_tuples",
        "Dead rows in the jobs table that vacuum has not removed yet (pg_stat_user_tables).",
        value=table.dead_tuples,
    )
    # Absent until the table's first vacuum (or analyze): no made-up age before there is one.
    if table.vacuum_age_s is not None:
        yield GaugeMetricFamily(
            "queue_jobs_table_vacuum_age_seconds",
            "Time since the jobs table was last vacuumed, by autovacuum or by hand.",
            value=table.vacuum_age_s,
        )
    if table.analyze_age_s is not None:
        yield GaugeMetricFamily(
            "queue_jobs_table_analyze_age_seconds",
            "Time since the jobs table's planner statistics were last gathered (analyze).",
            value=table.analyze_age_s,
        )


QUEUE_STATS = QueueStatsCollector()
REGISTRY.register(QUEUE_STATS)


def configure_labels(*, job_types: Iterable[str], queues: Iterable[str]) -> None:
    """The job types and queues that metrics name; every other one is ``other``."""
    queues = tuple(queues)
    _ENQUEUED.configure(job_types, queues)
    QUEUE_STATS.configure(queues)


class MetricsController(PrometheusController):
    """``/metrics``: refreshes the queue statistics (at most every few seconds), then renders."""

    @get(include_in_schema=False, **requires(Scope.METRICS_READ))
    async def get(self, ctx: NamedDependency[RequestContext]) -> Response:  # type: ignore[type-arg]
        if ctx.caller.queues is not None:
            # Every queue's depth, every key's requests: nothing here is one tenant's alone.
            raise PermissionDeniedException(
                detail="this API key may not read /metrics: they cover every queue, and the "
                "key is limited to some"
            )
        await QUEUE_STATS.refresh_if_stale(ctx.services.queue)
        return await super().get.fn(self)  # type: ignore[no-any-return]
