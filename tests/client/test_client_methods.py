"""``queue_client.Client``, every method, against real queue-api and queue-worker processes."""

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from client.conftest import System
from helpers import wait_until
from queue_client import (
    BadRequestError,
    Client,
    ConflictError,
    ForbiddenError,
    JobStatus,
    NewJob,
    NotFoundError,
    Outcome,
    QueueError,
    UnauthorizedError,
    UnprocessableError,
    WaitTimeoutError,
)

pytestmark = pytest.mark.e2e


def test_probes(client: Client) -> None:
    assert client.health() == "ok"
    assert client.ready() is True


def test_enqueue_then_wait_gives_the_handlers_result(client: Client) -> None:
    enqueued = client.enqueue("answer", {"q": "hello"}, priority=5, max_attempts=2, timeout_s=30)
    assert enqueued.outcome is Outcome.CREATED
    assert enqueued.job.type == "answer"
    assert enqueued.job.payload == {"q": "hello"}
    assert (enqueued.job.priority, enqueued.job.max_attempts) == (5, 2)

    done = client.wait(enqueued.job.id, timeout_s=20)
    assert done.status is JobStatus.COMPLETED
    assert done.result == {"answer": 42, "echo": "hello"}
    assert client.get_job(enqueued.job.id) == done


def test_the_seed_endpoints(client: Client, fresh_queue: str) -> None:
    job_id = client.legacy_enqueue("noop", {"a": 1}, queue=fresh_queue)
    record = client.legacy_status(job_id)
    assert (record.id, record.type, record.status) == (job_id, "noop", JobStatus.PENDING)
    assert record.payload == {"a": 1}
    # The seed's route takes the Idempotency-Key too: the same key gives the same job.
    again = client.legacy_enqueue("noop", {"a": 1}, queue=fresh_queue, idempotency_key="seed-1")
    assert (
        client.legacy_enqueue("noop", {"a": 1}, queue=fresh_queue, idempotency_key="seed-1")
        == again
    )
    assert again != job_id


def test_idempotency_and_unique_keys(client: Client, fresh_queue: str) -> None:
    first = client.enqueue("noop", {"n": 1}, queue=fresh_queue, idempotency_key="order-1")
    replay = client.enqueue("noop", {"n": 1}, queue=fresh_queue, idempotency_key="order-1")
    assert (first.outcome, replay.outcome) == (Outcome.CREATED, Outcome.REPLAYED)
    assert replay.job.id == first.job.id
    with pytest.raises(UnprocessableError) as refused:
        client.enqueue("noop", {"n": 2}, queue=fresh_queue, idempotency_key="order-1")
    assert refused.value.status == 422
    assert "idempotency" in refused.value.detail.lower()

    # Without a key of its own, each call is a new logical enqueue: a new job each time.
    a = client.enqueue("noop", {"n": 3}, queue=fresh_queue)
    b = client.enqueue("noop", {"n": 3}, queue=fresh_queue)
    assert a.job.id != b.job.id

    unique = f"report-{uuid.uuid4()}"
    held = client.enqueue("noop", {"n": 4}, queue=fresh_queue, unique_key=unique)
    duplicate = client.enqueue("noop", {"n": 5}, queue=fresh_queue, unique_key=unique)
    assert duplicate.outcome is Outcome.DUPLICATE
    assert duplicate.job.id == held.job.id


def test_enqueue_batch_keys_each_item(client: Client, fresh_queue: str) -> None:
    jobs = [NewJob(type="noop", payload={"i": i}, queue=fresh_queue) for i in range(3)]
    keyed = NewJob(type="noop", payload={"i": 9}, queue=fresh_queue, idempotency_key="batch-9")
    created = client.enqueue_batch([*jobs, keyed])
    assert created.outcomes == [Outcome.CREATED] * 4
    assert len(set(created.ids)) == 4
    again = client.enqueue_batch([keyed])
    assert again.outcomes == [Outcome.REPLAYED]
    assert again.ids == [created.ids[3]]


def test_pages_are_followed_by_cursor(client: Client, fresh_queue: str) -> None:
    ids = [client.enqueue("noop", {"i": i}, queue=fresh_queue).job.id for i in range(7)]
    page = client.list_jobs(queue=fresh_queue, limit=3)
    assert [job.id for job in page.jobs] == ids[::-1][:3]  # newest first
    assert page.next_cursor is not None
    listed = [job.id for job in client.iter_jobs(queue=fresh_queue, page_size=2)]
    assert listed == ids[::-1]
    assert list(client.iter_jobs(queue=fresh_queue, status="completed")) == []
    since = datetime.now(UTC) - timedelta(minutes=5)
    filtered = client.iter_jobs(queue=[fresh_queue], type=("noop",), created_after=since)
    assert len(list(filtered)) == 7


def test_cancel_retry_delete_one_job(client: Client, fresh_queue: str) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    job = client.enqueue("noop", {"x": 1}, queue=fresh_queue, scheduled_at=later).job
    assert job.scheduled_at == later
    with pytest.raises(ConflictError):
        client.delete_job(job.id)  # pending: cancel it first
    assert client.cancel_job(job.id).status is JobStatus.CANCELLED
    with pytest.raises(ConflictError):
        client.cancel_job(job.id)
    retried = client.retry_job(job.id)
    assert (retried.status, retried.attempts) == (JobStatus.PENDING, 0)
    client.cancel_job(job.id)
    client.delete_job(job.id)
    with pytest.raises(NotFoundError) as missing:
        client.get_job(job.id)
    assert missing.value.status == 404


def test_bulk_cancel_and_retry(client: Client, fresh_queue: str) -> None:
    for i in range(3):
        client.enqueue("noop", {"i": i}, queue=fresh_queue)
    client.enqueue("answer", {"q": 1}, queue=fresh_queue)
    assert client.cancel_jobs(limit=100, queue=fresh_queue, type="noop") == 3
    statuses = [job.status for job in client.iter_jobs(queue=fresh_queue)]
    assert sorted(statuses) == ["cancelled"] * 3 + ["pending"]
    assert client.retry_jobs(limit=2, queue=fresh_queue) == 2
    assert client.retry_jobs(limit=100, queue=fresh_queue, status="cancelled") == 1


def test_pausing_a_queue_holds_its_jobs_and_wait_times_out(client: Client, system: System) -> None:
    queue = "default"  # the queue the worker serves
    with system.stack.pausing(system.worker, queue):
        paused = client.pause_queue(queue)
    try:
        assert paused.paused
        assert paused.paused_at is not None
        assert next(q for q in client.list_queues() if q.name == queue).paused
        job = client.enqueue("answer", {"q": "held"}, queue=queue).job
        with pytest.raises(WaitTimeoutError) as still:
            client.wait(job.id, timeout_s=1.0)
        assert still.value.job.status is JobStatus.PENDING
    finally:
        resumed = client.resume_queue(queue)
    assert not resumed.paused
    assert client.wait(job.id, timeout_s=20).status is JobStatus.COMPLETED


def test_a_name_or_id_of_dots_stays_one_path_segment(client: Client) -> None:
    """``.`` and ``..`` are names like any other in a path, not steps up it: pausing the queue
    ``.`` must reach it, and ``cancel_job(".")`` must not reach POST /v1/jobs/cancel (the bulk
    cancel)."""
    for name in (".", ".."):
        assert client.pause_queue(name).name == name
        assert next(q for q in client.list_queues() if q.name == name).paused
        assert not client.resume_queue(name).paused
        with pytest.raises(BadRequestError, match="job_id: Invalid UUID"):
            client.cancel_job(name)
        with pytest.raises(BadRequestError, match="job_id: Invalid UUID"):
            client.get_job(name)


def test_workers_and_schedules(client: Client, system: System) -> None:
    (worker,) = client.list_workers()
    assert worker.pid == system.worker.proc.pid
    assert "answer" in worker.task_types
    assert worker.queues == ["default"]

    (schedule,) = client.list_schedules()
    assert (schedule.name, schedule.every_s) == ("hourly_report", 3600.0)
    assert client.pause_schedule("hourly_report").paused
    assert client.list_schedules()[0].next_run_at is None
    assert not client.resume_schedule("hourly_report").paused
    with pytest.raises(NotFoundError):
        client.pause_schedule("no_such_schedule")


def test_keys_scope_what_a_client_may_do(client: Client, system: System) -> None:
    name = f"mailer-{uuid.uuid4().hex[:6]}"
    created = client.create_key(
        name, ["jobs:write", "jobs:read"], queues=["emails"], expires_in_days=30, jobs_per_s=100
    )
    assert created.key.startswith("tq_")
    assert created.jobs_per_s == 100
    assert name in [key.name for key in client.list_keys()]
    assert client.set_key_limits(name, requests_per_s=50).requests_per_s == 50

    with Client(system.url, created.key) as mailer:
        assert mailer.enqueue("noop", {"a": 1}, queue="emails").outcome is Outcome.CREATED
        with pytest.raises(ForbiddenError) as forbidden:
            mailer.enqueue("noop", {"a": 1}, queue="billing")
        assert "queue" in forbidden.value.detail
        with pytest.raises(ForbiddenError):
            mailer.list_keys()  # no keys:admin
        assert client.revoke_key(name).revoked_at is not None

        def refused() -> bool:
            try:
                mailer.list_queues()
            except UnauthorizedError:
                return True
            return False

        wait_until(refused, what="the revoked key refused")


def test_errors_carry_the_apis_detail(client: Client, system: System) -> None:
    with pytest.raises(BadRequestError) as bad:
        client.enqueue("noop", {})  # an empty payload
    assert bad.value.status == 400
    assert any(item["key"] == "payload" for item in bad.value.extra), bad.value.extra
    assert "payload" in str(bad.value)
    with pytest.raises(BadRequestError):
        client.get_job("not-a-uuid")
    with pytest.raises(NotFoundError):
        client.get_job(uuid.uuid4())
    with (
        Client(system.url, "tq_wrongkey_" + "x" * 32) as stranger,
        pytest.raises(UnauthorizedError) as unauthorized,
    ):
        stranger.list_queues()
    assert isinstance(unauthorized.value, QueueError)
    assert unauthorized.value.status == 401
    assert unauthorized.value.detail


# Every operation of the API's OpenAPI document, and the client method that calls it: a route
# added to the API without a method here fails the test below.
CLIENT_METHODS = {
    "health": "health",
    "ready": "ready",
    "enqueueJob": "legacy_enqueue",
    "getJobStatus": "legacy_status",
    "createJob": "enqueue",
    "enqueueJobBatch": "enqueue_batch",
    "listJobs": "list_jobs",
    "getJob": "get_job",
    "deleteJob": "delete_job",
    "cancelJob": "cancel_job",
    "retryJob": "retry_job",
    "cancelJobs": "cancel_jobs",
    "retryJobs": "retry_jobs",
    "listQueues": "list_queues",
    "pauseQueue": "pause_queue",
    "resumeQueue": "resume_queue",
    "listWorkers": "list_workers",
    "listSchedules": "list_schedules",
    "pauseSchedule": "pause_schedule",
    "resumeSchedule": "resume_schedule",
    "createKey": "create_key",
    "listKeys": "list_keys",
    "revokeKey": "revoke_key",
    "setKeyLimits": "set_key_limits",
}
NOT_FOR_THE_CLIENT = {"metrics"}  # Prometheus scrapes it; no program reads it through a client


def test_the_client_covers_every_operation_of_the_api(system: System) -> None:
    document = httpx.get(f"{system.url}/schema/openapi.json", timeout=10).json()
    operations = {
        operation["operationId"]
        for path in document["paths"].values()
        for method, operation in path.items()
        if method in {"get", "post", "put", "delete", "patch"}
    }
    assert operations - NOT_FOR_THE_CLIENT == set(CLIENT_METHODS)
    for method in CLIENT_METHODS.values():
        assert callable(getattr(Client, method))


@pytest.mark.parametrize("number", [float("nan"), float("inf"), -float("inf")])
def test_a_payload_json_cannot_carry_is_refused_not_sent_as_null(
    client: Client, fresh_queue: str, number: float
) -> None:
    with pytest.raises(ValueError, match="NaN and infinity"):
        client.enqueue("noop", {"ratio": [1.0, {"deep": number}], "none": None}, queue=fresh_queue)
    with pytest.raises(ValueError, match="NaN and infinity"):
        client.enqueue_batch(
            [NewJob(type="noop", payload={"a": 1}, queue=fresh_queue),
             NewJob(type="noop", payload={"ratio": number}, queue=fresh_queue)]
        )  # fmt: skip
    assert client.list_jobs(queue=[fresh_queue]).jobs == []  # nothing was sent
    kept = client.enqueue("noop", {"none": None, "ratio": 0.5}, queue=fresh_queue).job
    assert client.get_job(kept.id).payload == {"none": None, "ratio": 0.5}
