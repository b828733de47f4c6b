"""The client's retries never make a duplicate job: answers lost after the API acted (reset
connections, timeouts), a database outage (503) and a rate limit (429), each against the real
API, counting the jobs it stored."""

import asyncio
import time
import uuid
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from client.conftest import System, start_system
from client.lossy_proxy import LossyProxy
from e2e.stack import Stack
from helpers import TcpProxy, host_port
from queue_client import (
    AsyncClient,
    Client,
    ConnectionFailedError,
    JobStatus,
    NewJob,
    Outcome,
    RateLimitedError,
    UnavailableError,
)
from queue_client.calls import WAIT_SLACK_S
from queue_client.retrying import NO_RETRY, RetryPolicy
from reliability_figures import Scenario, record

pytestmark = pytest.mark.e2e

FAST = RetryPolicy(attempts=6, base_delay_s=0.01, max_delay_s=0.05)
STORM = 30  # concurrent enqueues
STORM_LOST = 15  # of their answers lost after the API acted


def _port(url: str) -> int:
    return httpx.URL(url).port or 80


def _jobs_in(client: Client, queue: str) -> list[uuid.UUID]:
    return [job.id for job in client.iter_jobs(queue=queue)]


@pytest.fixture(name="queue_name")
def fx_queue_name() -> str:
    return f"storm-{uuid.uuid4().hex[:8]}"


@pytest.fixture(name="dropping")
def fx_dropping(system: System) -> Iterator[LossyProxy]:
    proxy = LossyProxy(_port(system.url), lose_first=3, mode="drop")
    yield proxy
    proxy.close()


def test_lost_answers_are_retried_into_the_same_job(
    system: System, client: Client, dropping: LossyProxy, queue_name: str
) -> None:
    with Client(dropping.url, system.key, retry=FAST) as lossy:
        enqueued = lossy.enqueue("noop", {"order": 1}, queue=queue_name)
    assert dropping.lost == 3, "the API answered three times and the client heard none"
    assert dropping.connections == 4
    # The first request made the job; the client's retries each met its Idempotency-Key.
    assert enqueued.outcome is Outcome.REPLAYED
    assert _jobs_in(client, queue_name) == [enqueued.job.id]


def test_a_batch_is_retried_whole_without_duplicates(
    system: System, client: Client, dropping: LossyProxy, queue_name: str
) -> None:
    jobs = [NewJob(type="noop", payload={"i": i}, queue=queue_name) for i in range(5)]
    with Client(dropping.url, system.key, retry=FAST) as lossy:
        batch = lossy.enqueue_batch(jobs)
    assert dropping.lost == 3
    assert batch.outcomes == [Outcome.REPLAYED] * 5
    assert sorted(_jobs_in(client, queue_name)) == sorted(batch.ids)


async def test_a_storm_of_concurrent_enqueues_makes_one_job_each(
    system: System, client: Client, queue_name: str
) -> None:
    proxy = LossyProxy(_port(system.url), lose_first=STORM_LOST, mode="drop")
    try:
        async with AsyncClient(proxy.url, system.key, retry=FAST) as lossy:
            results = await asyncio.gather(
                *(lossy.enqueue("noop", {"n": n}, queue=queue_name) for n in range(STORM))
            )
    finally:
        proxy.close()
    ids = [result.job.id for result in results]
    stored = _jobs_in(client, queue_name)
    record(
        Scenario(
            key="60-retry-storm",
            title="A retry storm from the client",
            what=(
                f"{STORM} concurrent enqueues through a proxy that drops the API's first"
                f" {STORM_LOST} answers after the API has acted; the client retries each with"
                " the same Idempotency-Key."
            ),
            test="tests/client/test_retry_storm.py::"
            "test_a_storm_of_concurrent_enqueues_makes_one_job_each",
            acknowledged=len(results),
            lost=len(set(ids) - set(stored)),
            extra={"answers lost": proxy.lost, "duplicate jobs stored": len(stored) - len(ids)},
        )
    )
    assert proxy.lost == STORM_LOST
    assert len(set(ids)) == STORM
    assert sorted(stored) == sorted(ids)
    assert sorted(job.payload["n"] for job in (r.job for r in results)) == list(range(STORM))


def test_timeouts_are_retried_into_the_same_job(
    system: System, client: Client, queue_name: str
) -> None:
    proxy = LossyProxy(_port(system.url), lose_first=2, mode="hold")
    try:
        with Client(proxy.url, system.key, timeout_s=0.5, retry=FAST) as slow:
            enqueued = slow.enqueue("noop", {"slow": True}, queue=queue_name)
    finally:
        proxy.close()
    assert proxy.lost == 2
    assert enqueued.outcome is Outcome.REPLAYED
    assert _jobs_in(client, queue_name) == [enqueued.job.id]


def test_a_non_idempotent_action_is_not_resent_after_a_lost_answer(
    system: System, client: Client, queue_name: str
) -> None:
    """A cancel whose answer was lost may have happened: the client says so rather than
    cancelling blindly again."""
    job = client.enqueue("noop", {"a": 1}, queue=queue_name).job
    proxy = LossyProxy(_port(system.url), lose_first=1, mode="drop")
    try:
        with (
            Client(proxy.url, system.key, retry=FAST) as lossy,
            pytest.raises(ConnectionFailedError, match="after 1 try"),
        ):
            lossy.cancel_job(job.id)
    finally:
        proxy.close()
    assert proxy.connections == 1
    assert client.get_job(job.id).status == "cancelled"  # it did happen, once


def test_a_database_outage_is_ridden_out(stack: Stack, db_url: str) -> None:
    """The API answers 503 (Retry-After: 1) while its database is cut; the client waits as
    told and retries. The database comes back on the client's second 503, whatever the
    timing, so no sleep decides the outcome."""
    db_proxy = TcpProxy(*host_port(db_url))
    try:
        system = start_system(stack, db_url, api_database_url=db_proxy.url(db_url))
        seen_503 = 0

        def on_response(response: httpx.Response) -> None:
            nonlocal seen_503
            if response.status_code == 503:
                seen_503 += 1
                if seen_503 == 2:
                    db_proxy.up()

        db_proxy.down()
        http = httpx.Client(timeout=10, event_hooks={"response": [on_response]})
        policy = RetryPolicy(attempts=30, base_delay_s=0.05, max_delay_s=0.2)
        with Client(system.url, system.key, retry=policy, http=http) as client:
            enqueued = client.enqueue("noop", {"outage": True}, queue="outage")
            assert seen_503 >= 2
            assert enqueued.outcome in {Outcome.CREATED, Outcome.REPLAYED}
            assert _jobs_in(client, "outage") == [enqueued.job.id]
    finally:
        db_proxy.close()


def test_a_rate_limit_is_waited_out_as_retry_after_says(
    system: System, client: Client, queue_name: str
) -> None:
    name = f"slow-{uuid.uuid4().hex[:6]}"
    limited = client.create_key(name, ["jobs:write", "jobs:read"], jobs_per_s=1, jobs_burst=1)
    with Client(system.url, limited.key, retry=NO_RETRY) as impatient:
        impatient.enqueue("noop", {"n": 0}, queue=queue_name)
        with pytest.raises(RateLimitedError) as limited_error:
            impatient.enqueue("noop", {"n": 1}, queue=queue_name)
        assert limited_error.value.status == 429
        assert limited_error.value.retry_after_s is not None
        assert limited_error.value.retry_after_s >= 1
    with Client(system.url, limited.key) as patient:
        made = [patient.enqueue("noop", {"n": n}, queue=queue_name).job.id for n in range(2, 4)]
    stored = _jobs_in(client, queue_name)
    assert len(stored) == 3, "one job per enqueue: the first, and the two that waited"
    assert set(made) <= set(stored)


def test_a_gateway_timeout_resends_only_what_is_safe_to_repeat(
    system: System, client: Client, queue_name: str
) -> None:
    """A load balancer's 504 comes after it passed the request on: the API may have acted, as
    when no answer came. An enqueue is sent again (its Idempotency-Key makes that safe); a bulk
    cancel is not, or its retry would cancel ``limit`` more jobs."""
    proxy = LossyProxy(_port(system.url), lose_first=1, mode="gateway")
    try:
        with Client(proxy.url, system.key, retry=FAST) as gated:
            enqueued = gated.enqueue("noop", {"gated": True}, queue=queue_name)
    finally:
        proxy.close()
    assert (proxy.lost, enqueued.outcome) == (1, Outcome.REPLAYED)
    assert _jobs_in(client, queue_name) == [enqueued.job.id]

    for n in range(3):
        client.enqueue("noop", {"n": n}, queue=queue_name)
    proxy = LossyProxy(_port(system.url), lose_first=1, mode="gateway")
    try:
        with (
            Client(proxy.url, system.key, retry=FAST) as gated,
            pytest.raises(UnavailableError) as unavailable,
        ):
            gated.cancel_jobs(limit=2, queue=queue_name)
    finally:
        proxy.close()
    assert unavailable.value.status == 504
    assert proxy.connections == 1
    statuses = sorted(job.status for job in client.iter_jobs(queue=queue_name))
    assert statuses == ["cancelled"] * 2 + ["pending"] * 2, "the limit held: one request went"


def test_wait_keeps_its_deadline_when_the_api_stops_answering(
    system: System, client: Client, queue_name: str
) -> None:
    """Each long poll may take its wait and WAIT_SLACK_S more; the retries of one that got no
    answer must not start past the caller's deadline, or wait(timeout_s=1) takes a minute."""
    job = client.enqueue("noop", {"a": 1}, queue=queue_name).job  # no worker serves the queue
    proxy = LossyProxy(_port(system.url), lose_first=100, mode="hold")
    policy = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05)
    started = time.monotonic()
    try:
        with (
            Client(proxy.url, system.key, retry=policy) as hung,
            pytest.raises(ConnectionFailedError, match="after 1 try"),
        ):
            hung.wait(job.id, timeout_s=1)
    finally:
        proxy.close()
    assert time.monotonic() - started < 1 + WAIT_SLACK_S + 3
    assert proxy.connections == 1


async def test_a_bulk_action_the_database_cut_short_is_not_sent_again(
    system: System, client: Client, queue_name: str
) -> None:
    """The API changes a bulk action's jobs 500 a transaction, so its 503 may come after some
    were: sent again, the action would change ``limit`` more. The database is cut under the
    second batch (held on a lock until its connection is terminated)."""
    for first in (0, 1000):
        client.enqueue_batch(
            [NewJob(type="noop", payload={"n": first + n}, queue=queue_name) for n in range(750)]
        )
    conn = await asyncpg.connect(system.database_url)
    try:
        lock = conn.transaction()
        await lock.start()
        # The newest job: in the action's second batch (its jobs are changed oldest first).
        await conn.execute(
            "SELECT id FROM jobs WHERE queue = $1 ORDER BY id DESC LIMIT 1 FOR UPDATE", queue_name
        )
        async with AsyncClient(system.url, system.key, retry=FAST) as admin:
            action = asyncio.ensure_future(admin.cancel_jobs(limit=1000, queue=queue_name))
            blocked = None
            for _ in range(400):
                blocked = await conn.fetchval(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database() AND pid <> pg_backend_pid()"
                )
                if blocked is not None or action.done():
                    break
                await asyncio.sleep(0.05)
            assert blocked is not None, "the second batch never waited on the lock"
            await conn.execute("SELECT pg_terminate_backend($1)", blocked)
            await lock.rollback()
            with pytest.raises(UnavailableError) as unavailable:
                await action
    finally:
        await conn.close()
    assert unavailable.value.status == 503
    statuses = [job.status for job in client.iter_jobs(queue=queue_name)]
    assert statuses.count(JobStatus.CANCELLED) == 500, "the first batch only, not 1000 more"
