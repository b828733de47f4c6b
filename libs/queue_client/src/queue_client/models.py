"""What the API answers, as typed values (msgspec Structs: decoded straight from the JSON bytes,
validated on the way). Fields the API adds later are ignored, so an older client keeps working.

The shapes follow the API's own (``GET /schema/openapi.json``); the names of the few that are
not one-to-one (``Enqueued``, ``JobStatusRecord``) say what the client builds from the answer.
"""

import re
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, TypedDict
from uuid import UUID

import msgspec


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """No transition leaves it but an explicit retry."""
        return self in {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}


class Outcome(StrEnum):
    """What an enqueue did."""

    CREATED = "created"  # a new job
    REPLAYED = "replayed"  # the job an earlier request with this idempotency key made
    DUPLICATE = "duplicate"  # the job holding this unique key; nothing was enqueued


class Scope(StrEnum):
    JOBS_WRITE = "jobs:write"
    JOBS_READ = "jobs:read"
    JOBS_ADMIN = "jobs:admin"
    QUEUES_ADMIN = "queues:admin"
    KEYS_ADMIN = "keys:admin"
    METRICS_READ = "metrics:read"


class Model(msgspec.Struct, kw_only=True, frozen=True):
    """Base of the answers: immutable, and convertible to plain JSON values."""

    def to_dict(self) -> dict[str, Any]:
        builtins: dict[str, Any] = msgspec.to_builtins(self)
        return builtins


class Dependency(Model, frozen=True):
    """A job another waits for: its status (None: deleted since), and whether it completed."""

    id: UUID
    status: JobStatus | None
    completed: bool


class Job(Model, frozen=True):
    """``GET /v1/jobs/{id}``: every field of a job."""

    id: UUID
    type: str
    payload: Any
    queue: str
    priority: int
    status: JobStatus
    attempts: int
    max_attempts: int
    scheduled_at: datetime | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    worker: str | None
    lease_expires_at: datetime | None
    timeout_s: float | None
    cancel_requested_at: datetime | None
    error_message: str | None
    result: Any
    errors: list[Any]
    unique_key: str | None = None
    unique_until: datetime | None = None
    # The key whose limits it obeys; how many of depends_on it still waits for; those jobs.
    concurrency_key: str | None = None
    waiting_for: int = 0
    depends_on: list[Dependency] = msgspec.field(default_factory=list)


class JobSummary(Model, frozen=True):
    """A job in a listing: no payload, result or errors."""

    id: UUID
    type: str
    queue: str
    status: JobStatus
    priority: int
    attempts: int
    max_attempts: int
    created_at: datetime
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    error_message: str | None


class JobPage(Model, frozen=True):
    """One page of ``GET /v1/jobs``, newest first; ``next_cursor`` is None on the last."""

    jobs: list[JobSummary]
    next_cursor: str | None


class Enqueued(Model, frozen=True):
    """``POST /v1/jobs``: the job, and whether this call made it."""

    job: Job
    outcome: Outcome


class BatchEnqueued(Model, frozen=True):
    """``POST /v1/jobs/batch``: the ids in request order, each with its outcome."""

    ids: list[UUID]
    outcomes: list[Outcome]


class JobStatusRecord(Model, frozen=True, rename="pascal"):
    """``GET /jobs/status``: the seed API's PascalCase object."""

    id: UUID = msgspec.field(name="ID")
    type: str
    payload: dict[str, Any] | None
    status: JobStatus
    attempts: int
    max_attempts: int
    error_message: str | None
    scheduled_at: datetime | None
    created_at: datetime
    updated_at: datetime


class BulkResult(Model, frozen=True):
    """One bulk request's answer: how many jobs it changed, and where to go on when it stopped
    at its bound of rows read (None: it walked every job the filter matches)."""

    affected: int
    next_cursor: str | None = None


class QueueInfo(Model, frozen=True):
    """One queue: its jobs now, whether it is paused, how many live workers serve it."""

    name: str
    due: int
    scheduled: int
    running: int
    oldest_due_age_s: float
    paused: bool
    paused_at: datetime | None
    workers: int


class QueuePause(Model, frozen=True):
    name: str
    paused: bool
    paused_at: datetime | None


class WorkerInfo(Model, frozen=True):
    id: str
    host: str
    pid: int
    queues: list[str]
    task_types: list[str]
    concurrency: int
    started_at: datetime
    last_seen_at: datetime


class Schedule(Model, frozen=True):
    name: str
    queue: str
    cron: str | None
    every_s: float | None
    tz: str
    missed: str
    grace_s: float
    paused: bool
    paused_at: datetime | None
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_job_id: UUID | None


class ApiKey(Model, frozen=True):
    """A key as listed: never its secret."""

    name: str
    prefix: str
    scopes: list[str]
    queues: list[str] | None
    expires_at: datetime | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    requests_per_s: float | None
    requests_burst: int | None
    jobs_per_s: float | None
    jobs_burst: int | None


class CreatedApiKey(ApiKey, frozen=True):
    """A new key with its secret, ``key``: shown this once, stored nowhere."""

    key: str


# -- what callers send ------------------------------------------------------------------------

# The API's bounds on the limits per key and on depends_on (queue_core.limits), checked by
# queuectl before it sends anything.
MAX_CONCURRENCY_KEY_LENGTH = 255
MAX_CONCURRENCY_LIMIT = 10_000
MAX_KEY_RATE_PER_S = 10_000.0
MIN_RATE_PER_S = 1 / 86_400  # one a day
MAX_KEY_RATE_BURST = 10_000
MAX_DEPENDENCIES = 100
# An Idempotency-Key: 1 to 255 printable ASCII characters, no space at either end.
MAX_IDEMPOTENCY_KEY_LENGTH = 255
IDEMPOTENCY_KEY_PATTERN = re.compile(r"[!-~]([ -~]*[!-~])?")


class EnqueueOptions(TypedDict, total=False):
    """A job's optional fields (``POST /v1/jobs``); left out, the API's defaults apply."""

    queue: str
    priority: int
    max_attempts: int
    scheduled_at: datetime
    timeout_s: float
    unique_key: str
    unique_for_s: float
    idempotency_key: str  # default: a new UUID per call, the same across its retries
    # Limits per key, held across every worker: at most concurrency_limit of the key's jobs
    # run at once, at most rate_limit start a second (bursts of rate_burst).
    concurrency_key: str
    concurrency_limit: int
    rate_limit: float
    rate_burst: int
    # Job ids this one waits for (in a batch, "$<index>" names an earlier item).
    depends_on: Sequence[UUID | str]


class NewJob(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """One job of a batch (``enqueue_batch``); ``idempotency_key`` defaults as in ``enqueue``."""

    type: str
    payload: dict[str, Any]
    queue: str | None = None
    priority: int | None = None
    max_attempts: int | None = None
    scheduled_at: datetime | None = None
    timeout_s: float | None = None
    unique_key: str | None = None
    unique_for_s: float | None = None
    idempotency_key: str | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    rate_limit: float | None = None
    rate_burst: int | None = None
    # Job ids, or "$<index>" of an earlier job of the same batch.
    depends_on: list[UUID | str] | None = None


Names = str | list[str] | tuple[str, ...]


class JobFilter(TypedDict, total=False):
    """Which jobs (``GET /v1/jobs``, bulk cancel and retry); every filter given must hold, and a
    list matches any of its values. Ranges include their start and exclude their end."""

    status: Names
    type: Names
    queue: Names
    created_after: datetime
    created_before: datetime
    finished_after: datetime
    finished_before: datetime


class KeyLimits(TypedDict, total=False):
    """A key's rate limits; one left out is no limit."""

    requests_per_s: float
    requests_burst: int
    jobs_per_s: float
    jobs_burst: int
