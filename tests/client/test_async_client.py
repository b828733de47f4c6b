"""``queue_client.AsyncClient`` against the real processes, and its parity with ``Client``: the
two are written side by side, so a method added to one and not the other fails here."""

import inspect
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from client.conftest import System
from queue_client import (
    AsyncClient,
    Client,
    ConflictError,
    ConnectionFailedError,
    JobStatus,
    NewJob,
    NotFoundError,
    Outcome,
    UnauthorizedError,
    WaitTimeoutError,
)
from queue_client.retrying import RetryPolicy
from queue_devtools.pgcluster import free_port

pytestmark = pytest.mark.e2e

_LIFECYCLE = {"__enter__", "__exit__", "close", "__aenter__", "__aexit__", "aclose"}


def _public(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(cls).items()
        if callable(member) and (not name.startswith("_") or name == "__init__")
        if name not in _LIFECYCLE
    }


def test_both_clients_have_the_same_methods_and_parameters() -> None:
    sync, async_ = _public(Client), _public(AsyncClient)
    assert sorted(sync) == sorted(async_)
    for name, signature in sync.items():
        assert list(signature.parameters) == list(async_[name].parameters), name
        if name != "__init__":
            assert inspect.iscoroutinefunction(getattr(AsyncClient, name)) or (
                inspect.isasyncgenfunction(getattr(AsyncClient, name))
            ), name


async def test_the_async_client_drives_the_whole_api(system: System) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    async with AsyncClient(system.url, system.key) as client:
        assert await client.health() == "ok"
        assert await client.ready()
        enqueued = await client.enqueue("answer", {"q": "async"})
        assert enqueued.outcome is Outcome.CREATED
        done = await client.wait(enqueued.job.id, timeout_s=20)
        assert done.result == {"answer": 42, "echo": "async"}
        assert (await client.get_job(done.id)).status is JobStatus.COMPLETED

        seed_id = await client.legacy_enqueue("noop", {"a": 1}, queue=queue)
        assert (await client.legacy_status(seed_id)).status is JobStatus.PENDING
        batch = await client.enqueue_batch(
            [NewJob(type="noop", payload={"i": i}, queue=queue) for i in range(4)]
        )
        assert batch.outcomes == [Outcome.CREATED] * 4
        listed = [job.id async for job in client.iter_jobs(queue=queue, page_size=2)]
        assert listed == [*batch.ids[::-1], seed_id]
        page = await client.list_jobs(queue=queue, limit=1)
        assert page.next_cursor is not None

        later = datetime.now(UTC) + timedelta(hours=1)
        job = (await client.enqueue("noop", {"x": 1}, queue=queue, scheduled_at=later)).job
        assert (await client.cancel_job(job.id)).status is JobStatus.CANCELLED
        assert (await client.retry_job(job.id)).status is JobStatus.PENDING
        with pytest.raises(ConflictError):
            await client.delete_job(job.id)
        assert await client.cancel_jobs(limit=100, queue=queue) == 6
        assert await client.retry_jobs(limit=100, queue=queue, type="noop") == 6
        await client.cancel_job(job.id)
        await client.delete_job(job.id)
        with pytest.raises(NotFoundError):
            await client.get_job(job.id)

        with system.stack.pausing(system.worker, "default"):
            assert (await client.pause_queue("default")).paused
        held = (await client.enqueue("answer", {"q": "held"})).job
        with pytest.raises(WaitTimeoutError):
            await client.wait(held.id, timeout_s=0.5)
        assert not (await client.resume_queue("default")).paused
        assert (await client.wait(held.id, timeout_s=20)).status is JobStatus.COMPLETED
        assert any(q.name == queue for q in await client.list_queues())

        assert [w.pid for w in await client.list_workers()] == [system.worker.proc.pid]
        assert (await client.pause_schedule("hourly_report")).paused
        assert not (await client.resume_schedule("hourly_report")).paused
        assert [s.name for s in await client.list_schedules()] == ["hourly_report"]

        name = f"async-{uuid.uuid4().hex[:6]}"
        created = await client.create_key(name, ["jobs:read"])
        assert name in [key.name for key in await client.list_keys()]
        assert (await client.set_key_limits(name, requests_per_s=5)).requests_per_s == 5
        assert (await client.revoke_key(created.prefix)).revoked_at is not None

    async with AsyncClient(system.url, "tq_wrongkey_" + "x" * 32) as stranger:
        with pytest.raises(UnauthorizedError):
            await stranger.list_workers()


async def test_no_api_is_a_connection_error_after_the_retries() -> None:
    policy = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.02)
    async with AsyncClient(f"http://127.0.0.1:{free_port()}", retry=policy) as client:
        with pytest.raises(ConnectionFailedError) as failed:
            await client.enqueue("noop", {"a": 1})
    assert failed.value.status is None
    assert "after 3 tries" in str(failed.value)
