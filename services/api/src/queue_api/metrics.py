"""The API's Prometheus metrics, served on ``/metrics``.

- HTTP: Litestar's Prometheus middleware, labelled by route template (never the raw path, so
  job ids never become label values), method and status.
- ``queue_api_jobs_enqueued_total{type,queue}``.
- Queue state read from PostgreSQL at scrape time, cached for ``STATS_TTL_S`` so that several
  Prometheus servers or a fast scrape interval cost one query: due, scheduled and running jobs
  and the oldest due job's age per queue, and the oldest open transaction in the database.
  Only the API exports these (one source of truth, not every worker replica).
"""

import time
from collections.abc import Iterable, Iterator

from litestar import get
from litestar.di import NamedDependency
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from litestar.response import Response
from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from queue_core.errors import DatabaseUnavailableError
from queue_core.jobs import QueueStats
from queue_core.log import get_logger
from queue_core.queue import Queue

log = get_logger("queue_api.metrics")

STATS_TTL_S = 5.0

JOBS_ENQUEUED = Counter(
    "queue_api_jobs_enqueued_total", "Jobs accepted by the API.", ["type", "queue"]
)

PROMETHEUS = PrometheusConfig(
    app_name="queue-api",
    prefix="queue_api",
    group_path=True,  # route templates as the path label: bounded cardinality
    exclude=["/metrics"],
    buckets=[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
)


class QueueStatsCollector(Collector):
    """Exposes the last queue statistics read from the database. Queues seen once keep being
    reported (with zeros) so their series do not vanish when they drain."""

    def __init__(self) -> None:
        self._stats: dict[str, QueueStats] = {}
        self._oldest_transaction_age_s: float | None = None
        self._read_at = 0.0
        self.up = False

    async def refresh_if_stale(self, queue: Queue) -> None:
        if time.monotonic() - self._read_at < STATS_TTL_S:
            return
        try:
            stats = await queue.stats()
            oldest_transaction = await queue.oldest_transaction_age_s()
        except DatabaseUnavailableError as exc:
            log.warning("queue_stats_unavailable", error=str(exc))
            self.up = False
            self._read_at = time.monotonic()
            return
        for name in self._stats:
            self._stats[name] = QueueStats(name, 0, 0, 0, 0.0)
        self._stats.update({s.queue: s for s in stats})
        self._oldest_transaction_age_s = oldest_transaction
        self._read_at = time.monotonic()
        self.up = True

    def collect(self) -> Iterable[Metric]:
        yield from self._queue_metrics()
        up = GaugeMetricFamily(
            "queue_database_up", "1 when the last statistics query reached PostgreSQL."
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
        for name, s in sorted(self._stats.items()):
            families["due"].add_metric([name], s.due)
            families["scheduled"].add_metric([name], s.scheduled)
            families["running"].add_metric([name], s.running)
            families["age"].add_metric([name], s.oldest_due_age_s)
        yield from families.values()


QUEUE_STATS = QueueStatsCollector()
REGISTRY.register(QUEUE_STATS)


class MetricsController(PrometheusController):
    """``/metrics``: refreshes the queue statistics (at most every few seconds), then renders."""

    @get(include_in_schema=False)
    async def get(self, job_queue: NamedDependency[Queue]) -> Response:  # type: ignore[type-arg]
        await QUEUE_STATS.refresh_if_stale(job_queue)
        return await super().get.fn(self)  # type: ignore[no-any-return]
