"""Typed clients for the task queue's HTTP API: ``Client`` (blocking) and ``AsyncClient``.

    with Client("http://127.0.0.1:8000", api_key) as queue:
        job = queue.enqueue("send_email", {"recipient": "a@example.com"}).job
        print(queue.wait(job.id, timeout_s=30).status)

Every enqueue carries an ``Idempotency-Key``, so the client's own retries (503, 429, no answer)
never make a second job. API errors are ``QueueError``s carrying the API's detail.
"""

from queue_client.async_client import AsyncClient
from queue_client.calls import Call
from queue_client.errors import (
    BadRequestError,
    ConflictError,
    ConnectionFailedError,
    ForbiddenError,
    NotFoundError,
    QueueError,
    RateLimitedError,
    UnauthorizedError,
    UnavailableError,
    UnexpectedResponseError,
    UnprocessableError,
    WaitTimeoutError,
)
from queue_client.models import (
    ApiKey,
    BatchEnqueued,
    CreatedApiKey,
    Dependency,
    Enqueued,
    EnqueueOptions,
    Job,
    JobFilter,
    JobPage,
    JobStatus,
    JobStatusRecord,
    JobSummary,
    KeyLimits,
    NewJob,
    Outcome,
    QueueInfo,
    QueuePause,
    Schedule,
    Scope,
    WorkerInfo,
)
from queue_client.retrying import NO_RETRY, RetryPolicy
from queue_client.sync_client import Client

__all__ = [
    "NO_RETRY",
    "ApiKey",
    "AsyncClient",
    "BadRequestError",
    "BatchEnqueued",
    "Call",
    "Client",
    "ConflictError",
    "ConnectionFailedError",
    "CreatedApiKey",
    "Dependency",
    "EnqueueOptions",
    "Enqueued",
    "ForbiddenError",
    "Job",
    "JobFilter",
    "JobPage",
    "JobStatus",
    "JobStatusRecord",
    "JobSummary",
    "KeyLimits",
    "NewJob",
    "NotFoundError",
    "Outcome",
    "QueueError",
    "QueueInfo",
    "QueuePause",
    "RateLimitedError",
    "RetryPolicy",
    "Schedule",
    "Scope",
    "UnauthorizedError",
    "UnavailableError",
    "UnexpectedResponseError",
    "UnprocessableError",
    "WaitTimeoutError",
    "WorkerInfo",
]
