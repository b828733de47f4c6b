"""Retention, black-box: old finished rows written straight into the table are deleted by real
queue-worker processes, in small batches, by one replica at a time, and the service rides out a
database outage."""

import asyncio
import contextlib
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import timedelta

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from core.retention_rows import insert_job, job_ids
from e2e.stack import Stack, Worker
from helpers import TcpProxy
from pg_provider import run_sync
from queue_core.retention import RETENTION_LOCK_KEY
from queue_core.states import JobStatus

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
# Completed kept a day, failed for good, cancelled an hour; a round every 0.2 s, 10 rows a batch.
RETENTION_ENV: Mapping[str, str] = {
    "WORKER_RETENTION_COMPLETED_S": "86400",
    "WORKER_RETENTION_FAILED_S": "0",
    "WORKER_RETENTION_CANCELLED_S": "3600",
    "WORKER_RETENTION_INTERVAL_S": "0.2",
    "WORKER_RETENTION_BATCH": "10",
    "LOG_LEVEL": "DEBUG",
}
ROUNDS_TIMEOUT_S = 15.0


async def _write_rows(database_url: str) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    """(rows retention must delete, rows it must keep)."""
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        gone = set()
        for i in range(25):
            gone.add(await insert_job(conn, JobStatus.COMPLETED, created_ago=2 * DAY + i * HOUR))
        for i in range(13):
            gone.add(await insert_job(conn, JobStatus.CANCELLED, created_ago=2 * HOUR + i * HOUR))
        kept = {
            await insert_job(conn, JobStatus.COMPLETED, created_ago=12 * HOUR),
            await insert_job(
                conn, JobStatus.CANCELLED, created_ago=30 * DAY, finished_ago=HOUR / 2
            ),
            await insert_job(conn, JobStatus.FAILED, created_ago=400 * DAY),  # kept for good
            await insert_job(conn, JobStatus.PENDING, created_ago=400 * DAY),
            await insert_job(conn, JobStatus.RUNNING, created_ago=400 * DAY),
        }
    finally:
        await conn.close()
    return gone, kept


async def _ids(database_url: str) -> set[uuid.UUID]:
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        return await job_ids(conn)
    finally:
        await conn.close()


@contextlib.contextmanager
def holding_retention_lock(database_url: str) -> Iterator[None]:
    """Hold retention's advisory lock from a session of the test's own, as a replica in the
    middle of a round does; it is released when the session ends."""
    locked = threading.Event()
    release = threading.Event()
    failure: list[BaseException] = []

    async def hold() -> None:
        conn = await asyncpg.connect(database_url, timeout=10)
        try:
            assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", RETENTION_LOCK_KEY)
            locked.set()
            while not release.is_set():
                await asyncio.sleep(0.05)
        finally:
            await conn.close()

    def target() -> None:
        try:
            asyncio.run(hold())
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            failure.append(exc)
            locked.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert locked.wait(10)
    if failure:
        raise failure[0]
    try:
        yield
    finally:
        release.set()
        thread.join(10)


def samples(worker: Worker, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = httpx.get(f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=5).text
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def deleted_by_status(workers: list[Worker]) -> Counter[str]:
    total: Counter[str] = Counter()
    for worker in workers:
        for line in worker.events("retention_round"):
            total.update(line["deleted"])
    return total


def test_workers_delete_old_finished_rows_in_batches_one_replica_at_a_time(
    stack: Stack, db_url: str
) -> None:
    gone, kept = run_sync(_write_rows(db_url))
    # Another replica "in a round": while it holds the lock, neither worker deletes anything.
    with holding_retention_lock(db_url):
        workers = [stack.spawn_worker(db_url, f"worker{i}", RETENTION_ENV) for i in (1, 2)]
        stack.wait_ready(*workers)
        stack.wait(
            lambda: all(len(w.events("retention_skipped")) >= 3 for w in workers),
            what="both workers skipping rounds while another holds the lock",
            alive=[w.proc for w in workers],
            timeout_s=ROUNDS_TIMEOUT_S,
        )
        assert run_sync(_ids(db_url)) == gone | kept, stack.logs()
        assert not any(w.events("retention_round") for w in workers), stack.logs()
        for worker in workers:
            skipped = samples(worker, "queue_worker_retention_rounds_total")
            assert skipped[(("result", "skipped"),)] >= 3, skipped

    stack.wait(
        lambda: run_sync(_ids(db_url)) == kept,
        what="the old finished rows deleted, the others kept",
        alive=[w.proc for w in workers],
        timeout_s=ROUNDS_TIMEOUT_S,
        detail=lambda: str(deleted_by_status(workers)),
    )
    # A round logs what it deleted once its last batch is committed: the rows can be seen gone
    # a moment before the line is written.
    expected = {"completed": 25, "cancelled": 13}
    stack.wait(
        lambda: deleted_by_status(workers).total() >= sum(expected.values()),
        what="the rounds that deleted them logged",
        alive=[w.proc for w in workers],
        timeout_s=ROUNDS_TIMEOUT_S,
        detail=lambda: str(deleted_by_status(workers)),
    )
    logs = stack.logs()
    # Each row deleted once, whichever replica took the rounds; in batches of 10.
    # (failed is kept for good: never even walked.)
    assert deleted_by_status(workers) == expected, logs
    batches = Counter[str]()
    for worker in workers:
        for line in worker.events("retention_round"):
            if line["deleted"].get("completed"):
                batches.update({"completed": line["batches"]["completed"]})
    assert batches["completed"] >= 3, logs  # 25 rows, 10 a batch
    metric_total = sum(
        samples(w, "queue_worker_retention_deleted_total").get((("status", "completed"),), 0)
        for w in workers
    )
    assert metric_total == 25, logs
    # The oldest-age gauges come from the replica that worked last; the other withdrew its own.
    stack.wait(
        lambda: any(samples(w, "queue_worker_retention_oldest_finished_seconds") for w in workers),
        what="an oldest-finished gauge",
        timeout_s=ROUNDS_TIMEOUT_S,
    )


def test_retention_rides_out_a_database_outage(
    stack: Stack, db_url: str, db_proxy: tuple[TcpProxy, str]
) -> None:
    proxy, proxied_url = db_proxy
    worker = stack.start_worker(proxied_url, "worker", RETENTION_ENV)
    stack.wait(
        lambda: bool(worker.events("retention_round")),
        what="a first retention round",
        alive=[worker.proc],
        timeout_s=ROUNDS_TIMEOUT_S,
    )
    proxy.down()
    try:
        stack.wait(
            lambda: any(
                line.get("service") == "retention" for line in worker.events("service_retrying")
            ),
            what="the retention service retrying during the outage",
            alive=[worker.proc],
            timeout_s=ROUNDS_TIMEOUT_S,
        )
    finally:
        proxy.up()
    gone, kept = run_sync(_write_rows(db_url))

    stack.wait(
        lambda: run_sync(_ids(db_url)) == kept,
        what="the old finished rows deleted after the outage",
        alive=[worker.proc],
        timeout_s=ROUNDS_TIMEOUT_S,
    )
    assert worker.proc.popen.poll() is None
    errors = samples(worker, "queue_worker_service_errors_total")
    assert errors[(("kind", "transient"), ("service", "retention"))] >= 1, errors
    assert gone.isdisjoint(run_sync(_ids(db_url)))
