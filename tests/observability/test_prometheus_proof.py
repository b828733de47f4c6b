"""Proof that the dashboard and the alerts work: a real Prometheus scrapes a real queue-api and
two real queue-workers while jobs complete, fail, retry, time out and are cancelled, a worker
is lost with a job running and the database goes away for a moment; then every PromQL
expression of deploy/grafana/dashboards/task-queue.json and deploy/prometheus/alerts.yml is
evaluated through Prometheus' HTTP API.

- Every dashboard query is valid and returns at least one series.
- Every alert expression is valid, and every series selector in it matches scraped series (an
  alert whose condition the test cannot drive still reads metrics that exist).
- The alerts the test drives fire: QueueJobFailureRatioHigh (failing jobs),
  QueueApi5xxRatioHigh (the database cut away from the API), and, last, QueueNoWorkerUp (both
  workers stopped). The test's copy of alerts.yml shortens every `for` so they fire in seconds.

A rate() over a counter needs two samples that differ, so the jobs run in waves that
Prometheus scrapes in between, and the failing ones are repeated until the ratio shows.
"""

import math
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.stack import SEED_SEND_EMAIL, Api, Stack, Worker, enqueue, fetch
from helpers import TcpProxy
from observability.conftest import INSTALL_ALLOWANCE_S
from observability.deploy_files import (
    ALERT_RULES,
    Query,
    alert_queries,
    alert_rules,
    dashboard_queries,
    dump_yaml,
    load_dashboard,
    load_yaml,
    selectors,
)
from observability.prometheus_bin import PrometheusBinaries
from observability.prometheus_server import PrometheusServer
from queue_core.states import FINAL_STATUSES

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(INSTALL_ALLOWANCE_S + 150)]

SCRAPE_INTERVAL = "1s"
SHORT_FOR = "1s"  # every alert's `for`, in the test's copy of the rules
STEP_TIMEOUT_S = 20.0

E2E_DIR = Path(__file__).resolve().parents[1] / "e2e"

# The two scraped workers serve `default`. A short heartbeat lets a cancel land fast, and a
# fast rescuer takes the lost worker's job back soon after its 1 s lease runs out. Both declare
# an every-second schedule (e2e/schedule_tasks.py), for the schedule panels and alert.
WORKER_ENV: Mapping[str, str] = {
    "PYTHONPATH": f"{E2E_DIR}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    "WORKER_TASKS": "queue_worker.builtin_tasks,schedule_tasks",
    "WORKER_CONCURRENCY": "4",
    "WORKER_HEARTBEAT_S": "0.25",
    "WORKER_LEASE_S": "5",
    "WORKER_RESCUE_INTERVAL_S": "0.5",
}
# Not scraped: it claims one job from its own queue and is killed, for the rescue metrics.
DOOMED_WORKER_ENV: Mapping[str, str] = {
    "WORKER_QUEUES": "doomed",
    "WORKER_CONCURRENCY": "1",
    "WORKER_HEARTBEAT_S": "0.25",
    "WORKER_LEASE_S": "1",
}

DRIVEN_ALERTS = ("QueueJobFailureRatioHigh", "QueueApi5xxRatioHigh")


def _job(job_type: str, payload: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"type": job_type, "payload": payload, **fields}


# One wave: completed, retried and failed attempts (a failing handler, no handler, a timeout).
# Cancelled ones come from _cancel_running_job.
WAVE: list[dict[str, Any]] = [
    _job("noop", {"n": 1}),
    _job("noop", {"n": 2}),
    dict(SEED_SEND_EMAIL),  # without SMTP_HOST the worker logs the email
    _job("sleep", {"seconds": 0.2}),
    _job("fail", {"message": "proof"}, max_attempts=2),  # retried, then failed
    _job("fail", {"message": "proof"}, max_attempts=2),
    _job("no_such_type", {"x": 1}),  # no handler: failed at once
    _job("sleep", {"seconds": 10}, timeout_s=0.3, max_attempts=1),  # timed out: failed
]


@dataclass(frozen=True)
class Observed:
    """The processes under observation and the Prometheus that scrapes them."""

    stack: Stack
    database_url: str
    proxy: TcpProxy
    api: Api
    workers: tuple[Worker, Worker]
    doomed: Worker
    prometheus: PrometheusServer


def _rules_with_short_for(work_dir: Path) -> Path:
    rules = load_yaml(ALERT_RULES)
    for rule in alert_rules(rules):
        rule["for"] = SHORT_FOR
    copy = work_dir / "alerts.yml"
    dump_yaml(rules, copy)
    return copy


@pytest.fixture(name="observed")
def fx_observed(
    stack: Stack,
    db_url: str,
    db_proxy: tuple[TcpProxy, str],
    prometheus_bin: PrometheusBinaries,
    tmp_path: Path,
) -> Iterator[Observed]:
    proxy, proxied_url = db_proxy  # the API and the scraped workers reach PostgreSQL through it
    # The queues the dashboards show by name; any other would be counted as "other".
    api = stack.spawn_api(proxied_url, env={"API_METRICS_QUEUES": "default,doomed"})
    workers = (
        stack.spawn_worker(proxied_url, "worker-a", WORKER_ENV),
        stack.spawn_worker(proxied_url, "worker-b", WORKER_ENV),
    )
    doomed = stack.spawn_worker(db_url, "worker-doomed", DOOMED_WORKER_ENV)
    stack.wait_ready(api, *workers, doomed)

    prometheus_dir = tmp_path / "prometheus"
    prometheus_dir.mkdir()
    config = prometheus_dir / "prometheus.yml"
    dump_yaml(
        {
            "global": {
                "scrape_interval": SCRAPE_INTERVAL,
                "scrape_timeout": SCRAPE_INTERVAL,
                "evaluation_interval": SCRAPE_INTERVAL,
            },
            "rule_files": [str(_rules_with_short_for(prometheus_dir))],
            "scrape_configs": [
                {
                    "job_name": "queue-api",
                    "static_configs": [{"targets": [api.base_url.removeprefix("http://")]}],
                    # /metrics needs a key with metrics:read, as deploy/prometheus does.
                    "authorization": {"type": "Bearer", "credentials": api.key},
                },
                {
                    "job_name": "queue-worker",
                    "static_configs": [
                        {"targets": [f"127.0.0.1:{w.metrics_port}" for w in workers]}
                    ],
                },
            ],
        },
        config,
    )
    prometheus = PrometheusServer(prometheus_bin.prometheus, config, prometheus_dir)
    try:
        prometheus.wait_ready()
        yield Observed(stack, db_url, proxy, api, workers, doomed, prometheus)
    finally:
        prometheus.stop()


# -- driving the system -----------------------------------------------------------------------


def _statuses(database_url: str, ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    listed = ", ".join(f"'{job_id}'" for job_id in ids)
    rows = fetch(database_url, f"SELECT id, status FROM jobs WHERE id IN ({listed})")
    return {row["id"]: row["status"] for row in rows}


def _wait_for_statuses(
    observed: Observed, ids: list[uuid.UUID], wanted: frozenset[str], what: str
) -> None:
    last: dict[uuid.UUID, str] = {}

    def reached() -> bool:
        nonlocal last
        last = _statuses(observed.database_url, ids)
        return len(last) == len(ids) and all(s in wanted for s in last.values())

    observed.stack.wait(
        reached, what=what, timeout_s=STEP_TIMEOUT_S, detail=lambda: str(last.values())
    )


def _run_wave(observed: Observed, client: httpx.Client, jobs: list[dict[str, Any]]) -> None:
    ids = [enqueue(client, job) for job in jobs]
    _wait_for_statuses(observed, ids, FINAL_STATUSES, f"{len(ids)} jobs finished")


def _cancel_running_job(observed: Observed, client: httpx.Client) -> None:
    job_id = enqueue(client, _job("sleep", {"seconds": 30}))
    _wait_for_statuses(observed, [job_id], frozenset({"running"}), "the sleep job running")
    response = client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 202, f"{response.status_code} {response.text}"
    _wait_for_statuses(observed, [job_id], frozenset({"cancelled"}), "the job cancelled")


def _lose_a_worker_with_a_running_job(observed: Observed, client: httpx.Client) -> None:
    """SIGKILL a worker in the middle of a job: its lease runs out and a scraped worker's
    rescuer puts the job back to pending (in a queue nobody serves now, so it stays due)."""
    job_id = enqueue(client, _job("sleep", {"seconds": 60}, queue="doomed"))
    _wait_for_statuses(observed, [job_id], frozenset({"running"}), "the doomed worker's job")
    observed.doomed.proc.signal(signal.SIGKILL)


def _has_series(observed: Observed, promql: str) -> Callable[[], bool]:
    return lambda: bool(observed.prometheus.query(promql))


def _alert_reached(observed: Observed, name: str, states: frozenset[str]) -> Callable[[], bool]:
    return lambda: observed.prometheus.alert_states().get(name) in states


def _cut_the_database_while_clients_post(observed: Observed, client: httpx.Client) -> int:
    """With PostgreSQL unreachable, POST /jobs answers 503: post until the 5xx alert has
    seen it (pending or firing), then restore the database. Returns how many 503s it took."""
    observed.proxy.down()
    unavailable = 0
    try:
        reached = _alert_reached(observed, "QueueApi5xxRatioHigh", frozenset({"pending", "firing"}))
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while not reached():
            assert time.monotonic() < deadline, (
                f"QueueApi5xxRatioHigh not pending after {unavailable} 503s\n"
                f"{observed.prometheus.log()}\n{observed.stack.logs()}"
            )
            for _ in range(10):
                response = client.post("/jobs", json=_job("noop", {"during": "outage"}))
                assert response.status_code == 503, f"{response.status_code} {response.text}"
                unavailable += 1
            time.sleep(0.2)
    finally:
        observed.proxy.up()
    return unavailable


# -- evaluating -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluated:
    query: Query
    series: int
    nan: int  # of which the value is NaN (e.g. a quantile over buckets that did not move)


def _evaluate(observed: Observed, query: Query) -> Evaluated:
    result = observed.prometheus.query(query.promql)
    nan = sum(1 for series in result if math.isnan(float(series["value"][1])))
    return Evaluated(query, len(result), nan)


def _table(rows: list[Evaluated]) -> str:
    width = max(len(row.query.source) for row in rows)
    lines = [f"{'source':<{width}}  series  expression"]
    for row in rows:
        count = f"{row.series}" + (f" ({row.nan} NaN)" if row.nan else "")
        expr = " ".join(row.query.promql.split())
        lines.append(f"{row.query.source:<{width}}  {count:<6}  {expr}")
    return "\n".join(lines)


def _evaluate_until_all_return_data(observed: Observed, queries: list[Query]) -> list[Evaluated]:
    """Every query at once, again until each returns a series (a fresh counter needs two
    scrapes before rate() sees it), or the deadline."""
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while True:
        rows = [_evaluate(observed, query) for query in queries]
        if all(row.series for row in rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def test_every_dashboard_query_and_alert_works_on_a_real_prometheus(observed: Observed) -> None:
    stack, prometheus = observed.stack, observed.prometheus
    dashboard_qs = dashboard_queries(load_dashboard())
    alert_qs = alert_queries(load_yaml(ALERT_RULES))

    prometheus.wait(
        lambda: sum(t["health"] == "up" for t in prometheus.targets()["activeTargets"]) == 3,
        what="the API and both workers scraped",
        timeout_s=STEP_TIMEOUT_S,
    )
    with observed.api.client() as client:
        _lose_a_worker_with_a_running_job(observed, client)
        _run_wave(observed, client, WAVE)
        _cancel_running_job(observed, client)
        # A job due later, so the scheduled gauge has something to count.
        enqueue(client, _job("noop", {"later": True}, scheduled_at="2099-01-01T00:00:00Z"))
        stack.wait(
            _has_series(observed, 'queue_worker_jobs_finished_total{outcome="cancelled"}'),
            what="the first wave scraped",
            timeout_s=STEP_TIMEOUT_S,
        )
        _run_wave(observed, client, WAVE)
        _cancel_running_job(observed, client)

        # More failures until the ratio has been seen (each worker's failed-series must exist
        # before an increase of it counts).
        failing = _alert_reached(
            observed, "QueueJobFailureRatioHigh", frozenset({"pending", "firing"})
        )
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while not failing():
            assert time.monotonic() < deadline, f"no failure ratio seen\n{prometheus.log()}"
            _run_wave(observed, client, [_job("fail", {"message": "again"}, max_attempts=1)] * 2)
            time.sleep(1)

        unavailable = _cut_the_database_while_clients_post(observed, client)
        stack.wait(
            _has_series(observed, "queue_worker_database_reconnects_total"),
            what="the workers' database reconnects scraped",
            timeout_s=STEP_TIMEOUT_S,
        )
        stack.wait(
            _has_series(observed, "queue_worker_jobs_rescued_total"),
            what="the lost worker's job rescued and scraped",
            timeout_s=STEP_TIMEOUT_S,
        )
        _run_wave(observed, client, WAVE[:4])  # the system works again after the outage
    # The jobs table's vacuum and analyze ages exist once it has had one of each; autovacuum
    # may not have come round yet on this young table.
    fetch(observed.database_url, "VACUUM ANALYZE jobs")

    for name in DRIVEN_ALERTS:
        stack.wait(
            _alert_reached(observed, name, frozenset({"firing"})),
            what=f"alert {name} firing",
            timeout_s=STEP_TIMEOUT_S,
            detail=lambda: str(prometheus.alert_states()),
        )

    dashboard_rows = _evaluate_until_all_return_data(observed, dashboard_qs)
    selector_qs = sorted(
        {Query(f"selector in {q.source}", s) for q in alert_qs for s in selectors(q.promql)},
        key=lambda q: q.expr,
    )
    selector_rows = [_evaluate(observed, query) for query in selector_qs]
    alert_rows = [_evaluate(observed, query) for query in alert_qs]
    queues = prometheus.label_values("queue", "queue_jobs_due")

    # Last: no worker left. QueueNoWorkerUp's expression returns its series only now.
    for worker in observed.workers:
        worker.proc.stop()
    stack.wait(
        _alert_reached(observed, "QueueNoWorkerUp", frozenset({"firing"})),
        what="alert QueueNoWorkerUp firing",
        timeout_s=STEP_TIMEOUT_S,
        detail=lambda: str(prometheus.alert_states()),
    )
    (no_worker,) = (q for q in alert_qs if q.source == "alert QueueNoWorkerUp")
    no_worker_row = _evaluate(
        observed, Query(f"{no_worker.source} (workers stopped)", no_worker.expr)
    )

    table = _table([*dashboard_rows, *alert_rows, no_worker_row, *selector_rows])
    print(f"\n{unavailable} requests answered 503 during the outage\n{table}")  # noqa: T201
    detail = f"\n{table}\n{prometheus.log()[-5000:]}"
    empty = [row.query.source for row in dashboard_rows if not row.series]
    assert empty == [], f"dashboard queries without data: {empty}{detail}"
    all_nan = [row.query.source for row in dashboard_rows if row.nan == row.series]
    assert all_nan == [], f"dashboard queries with only NaN: {all_nan}{detail}"
    unmatched = [row.query.expr for row in selector_rows if not row.series]
    assert unmatched == [], f"alert selectors matching no series: {unmatched}{detail}"
    assert no_worker_row.series == 1, detail
    assert {"default", "doomed"} <= set(queues), f"queue variable values: {queues}"
