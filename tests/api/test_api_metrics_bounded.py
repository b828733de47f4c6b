"""What clients choose cannot grow the API's /metrics: job types and queues outside
API_METRICS_JOB_TYPES and API_METRICS_QUEUES are counted as ``other``, in the enqueue counter
and in the queue-state gauges read from PostgreSQL, and nothing a row holds can make /metrics
fail or reach the log."""

from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from structlog.typing import EventDict

from api.support import SEED_SEND_EMAIL, ApiClient, bearer
from queue_api import metrics
from queue_api.app import create_app
from queue_api.settings import ApiSettings
from queue_core.metric_labels import OTHER_LABEL

FLOOD = 1000  # one batch, the most POST /v1/jobs/batch takes
FLOOD_PREFIX = "flood-"
OLD_AGE_S = 3600
MARKER = "marker-3f9c"  # a job type only a bad row's error message could carry

QUEUE_GAUGES = (
    "queue_jobs_due",
    "queue_jobs_scheduled",
    "queue_jobs_running",
    "queue_oldest_due_job_age_seconds",
)

Samples = dict[tuple[tuple[str, str], ...], float]


def samples(text: str, name: str) -> Samples:
    """The values of sample ``name`` in an exposition, by their sorted labels."""
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def by_queue(text: str, name: str) -> dict[str, float]:
    return {dict(labels)["queue"]: value for labels, value in samples(text, name).items()}


def enqueued(text: str) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["type"], dict(labels)["queue"]): value
        for labels, value in samples(text, "queue_api_jobs_enqueued_total").items()
    }


def registry_enqueued() -> dict[tuple[str, str], float]:
    """The counter as it stands, read without a scrape: a scrape would also read (and cache for
    STATS_TTL_S) the queue statistics before the test has enqueued anything."""
    return enqueued(generate_latest(REGISTRY).decode())


def increase(
    before: Mapping[tuple[str, str], float], after: Mapping[tuple[str, str], float]
) -> dict[tuple[str, str], float]:
    """What each series gained: the counter is one per process, other tests add to it too."""
    return {
        key: value - before.get(key, 0.0)
        for key, value in after.items()
        if value != before.get(key, 0.0)
    }


async def scrape(client: ApiClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return response.text


def job(job_type: str, queue: str, **fields: Any) -> dict[str, Any]:
    return {"type": job_type, "payload": {"n": 1}, "queue": queue, **fields}


async def enqueue_batch(client: ApiClient, jobs: Iterable[dict[str, Any]]) -> None:
    response = await client.post("/v1/jobs/batch", json={"jobs": list(jobs)})
    assert response.status_code == 201, response.text


@pytest.fixture(name="configured_client")
async def fx_configured_client(
    db_url: str, admin_key: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ApiClient]:
    """An app whose metrics name the types alpha and beta and the queues default and q1, set
    through the environment as a deployment sets them."""
    monkeypatch.setenv("API_METRICS_JOB_TYPES", "alpha, beta")
    monkeypatch.setenv("API_METRICS_QUEUES", "default,q1")
    async with AsyncTestClient(app=create_app(ApiSettings(DATABASE_URL=db_url))) as client:
        client.headers.update(bearer(admin_key))
        yield client


async def test_a_flood_of_made_up_types_and_queues_is_counted_as_other(
    configured_client: ApiClient, db: asyncpg.Connection
) -> None:
    client = configured_client
    before = registry_enqueued()

    # 1000 types and 1000 queues nobody configured, one job each.
    await enqueue_batch(
        client, (job(f"{FLOOD_PREFIX}t{n}", f"{FLOOD_PREFIX}q{n}") for n in range(FLOOD))
    )
    late = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    await enqueue_batch(
        client,
        [
            *(job("alpha", "q1") for _ in range(3)),
            *(job("beta", "default") for _ in range(2)),
            job("alpha", f"{FLOOD_PREFIX}q-alpha"),
            job(f"{FLOOD_PREFIX}t-q1", "q1"),
            job(f"{FLOOD_PREFIX}t-late", f"{FLOOD_PREFIX}q-late", scheduled_at=late),
        ],
    )
    response = await client.post("/jobs", json=SEED_SEND_EMAIL)  # send_email: not configured
    assert response.status_code == 201, response.text
    # One made-up queue's job has waited an hour: "other" reports the oldest of all its queues.
    await db.execute(
        "UPDATE jobs SET created_at = now() - make_interval(secs => $1) WHERE queue = $2",
        OLD_AGE_S,
        f"{FLOOD_PREFIX}q0",
    )

    text = await scrape(client)

    assert FLOOD_PREFIX not in text
    assert increase(before, enqueued(text)) == {
        (OTHER_LABEL, OTHER_LABEL): FLOOD + 1,
        ("alpha", "q1"): 3,
        ("beta", "default"): 2,
        ("alpha", OTHER_LABEL): 1,
        (OTHER_LABEL, "q1"): 1,
        (OTHER_LABEL, "default"): 1,
    }
    for name in QUEUE_GAUGES:  # every configured queue and "other", never more
        assert set(by_queue(text, name)) == {"default", "q1", OTHER_LABEL}, name
    assert by_queue(text, "queue_jobs_due") == {"default": 3, "q1": 4, OTHER_LABEL: FLOOD + 1}
    assert by_queue(text, "queue_jobs_scheduled") == {"default": 0, "q1": 0, OTHER_LABEL: 1}
    assert by_queue(text, "queue_jobs_running") == {"default": 0, "q1": 0, OTHER_LABEL: 0}
    ages = by_queue(text, "queue_oldest_due_job_age_seconds")
    assert OLD_AGE_S <= ages[OTHER_LABEL] < OLD_AGE_S + 60
    assert ages["q1"] < 60
    # The gauges add up to the table.
    due = await db.fetchval(
        "SELECT count(*) FROM jobs WHERE status = 'pending'"
        " AND coalesce(scheduled_at, created_at) <= now()"
    )
    assert sum(by_queue(text, "queue_jobs_due").values()) == due


async def test_the_default_types_and_queue_are_named(client: ApiClient) -> None:
    before = registry_enqueued()
    await enqueue_batch(client, [job("noop", "default"), job("sleep", "elsewhere")])
    response = await client.post("/jobs", json=SEED_SEND_EMAIL)
    assert response.status_code == 201, response.text

    text = await scrape(client)

    assert increase(before, enqueued(text)) == {
        ("noop", "default"): 1,
        ("sleep", OTHER_LABEL): 1,
        ("send_email", "default"): 1,
    }
    assert by_queue(text, "queue_jobs_due") == {"default": 2, OTHER_LABEL: 1}


async def test_a_stats_query_that_fails_on_a_row_leaves_metrics_answering(
    configured_client: ApiClient,
    db: asyncpg.Connection,
    logs: list[EventDict],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = configured_client
    response = await client.post("/jobs", json=job(MARKER, "q1", payload={"marker": MARKER}))
    assert response.status_code == 201, response.text
    # A row the statistics query cannot digest, and whose value the driver's message quotes:
    # "jobs" becomes a view that casts this row's type to a timestamp.
    await db.execute(
        f"""
        ALTER TABLE jobs RENAME TO jobs_stored;
        CREATE VIEW jobs AS
            SELECT id, queue, status, created_at, concurrency_key, waiting_for,
                   CASE WHEN type = '{MARKER}' THEN type::timestamptz ELSE scheduled_at END
                       AS scheduled_at
            FROM jobs_stored;
        """
    )

    first, second = await scrape(client), await scrape(client)

    for text in (first, second):
        assert samples(text, "queue_database_up") == {(): 0.0}
    failures = [e for e in logs if e["event"] == "queue_stats_failed"]
    # One line for both scrapes (the failure is cached like a result), naming what broke and
    # nothing a row holds.
    assert failures == [
        {
            "event": "queue_stats_failed",
            "log_level": "error",
            "error_type": "InvalidDatetimeFormatError",
            "sqlstate": "22007",
        }
    ]
    assert not [e for e in logs if MARKER in repr(e)]

    await db.execute("DROP VIEW jobs; ALTER TABLE jobs_stored RENAME TO jobs")
    monkeypatch.setattr(metrics, "STATS_TTL_S", 0.0)  # the next scrape reads again
    text = await scrape(client)
    assert samples(text, "queue_database_up") == {(): 1.0}
    assert by_queue(text, "queue_jobs_due") == {"default": 0, "q1": 1, OTHER_LABEL: 0}
