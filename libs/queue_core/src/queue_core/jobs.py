"""Typed values that cross the queue's boundary: what callers enqueue and what they get back."""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from queue_core.states import DEFAULT_MAX_ATTEMPTS, DEFAULT_PRIORITY, DEFAULT_QUEUE, JobStatus

# A payload as read back from the table. The API only stores JSON objects, but a row written
# around it may hold any JSON value, or one nested too deeply to decode (read as
# queue_core.db.UNDECODABLE_JSON): readers check before they rely on an object.
StoredPayload = Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Idempotency:
    """A request's idempotency key (already namespaced by its caller: keys are global), the
    fingerprint of the request it came with (e.g. a SHA-256 of its canonical form), and how
    many seconds from now the key holds."""

    key: str
    fingerprint: bytes
    ttl_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class NewJob:
    """A job to enqueue. ``scheduled_at`` None means run as soon as a worker is free."""

    type: str
    payload: dict[str, Any]
    queue: str = DEFAULT_QUEUE
    priority: int = DEFAULT_PRIORITY
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    scheduled_at: datetime | None = None
    timeout_s: float | None = None
    # At most one pending or running job holds a unique key (``unique_for_s`` None), or one job
    # of any status for ``unique_for_s`` seconds from its enqueue. See queue_core.keyed.
    unique_key: str | None = None
    unique_for_s: float | None = None
    # A client's idempotency key: the same key with the same request gives the same job.
    idempotency: Idempotency | None = None
    # Limits per key, across every worker (queue_core.gated): at most concurrency_limit jobs of
    # the key run at once, and at most rate_limit start a second (bursts of rate_burst). The
    # latest enqueue's values apply to the key; a limit left out (None) keeps the key's.
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    rate_limit: float | None = None
    rate_burst: int | None = None
    # Jobs this one waits for: ids of existing jobs, or (in a batch) the index of an earlier
    # job of the same batch. It runs once all completed; fails or is cancelled with them.
    depends_on: tuple[UUID | int, ...] = ()


class EnqueueOutcome(StrEnum):
    """What a keyed enqueue did (``queue_core.keyed``)."""

    CREATED = "created"  # a new job
    REPLAYED = "replayed"  # the job an earlier request with this idempotency key made
    DUPLICATE = "duplicate"  # the job holding this unique key; nothing was enqueued


@dataclass(frozen=True, slots=True)
class Enqueued:
    """The job an enqueue answers with, and whether it is new."""

    id: UUID
    outcome: EnqueueOutcome


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRecord:
    """A job as stored: what the status endpoint shows."""

    id: UUID
    type: str
    payload: StoredPayload
    status: JobStatus
    attempts: int
    max_attempts: int
    error_message: str | None
    scheduled_at: datetime | None
    created_at: datetime
    updated_at: datetime
    queue: str
    priority: int
    started_at: datetime | None
    finished_at: datetime | None
    timeout_s: float | None
    cancel_requested_at: datetime | None
    # The worker holding it and until when (set while running), the handler's result (JSON,
    # once completed) and the errors of past attempts ([{"attempt", "at", "error"}], newest last).
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    result: StoredPayload = None
    errors: StoredPayload = None
    # Its unique key, and until when it holds it (None: while pending or running).
    unique_key: str | None = None
    unique_until: datetime | None = None
    # Its limit group, and how many of its dependencies have not completed yet.
    concurrency_key: str | None = None
    waiting_for: int = 0


@dataclass(frozen=True, slots=True)
class Dependency:
    """A job another waits for: its status (None: deleted since) and whether it completed."""

    id: UUID
    status: JobStatus | None
    satisfied: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSummary:
    """A job as a listing shows it: no payload, result or errors, to keep pages small."""

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


# ClaimedJob, Outcome and Recorded are made for every job a worker runs, tens of thousands a
# second: they are not frozen, since a frozen dataclass's __init__ costs four times as much
# (each field set through object.__setattr__). Nothing changes them after construction.


@dataclass(slots=True, kw_only=True)
class ClaimedJob:
    """A job leased to a worker. ``attempt`` counts this run (1 on the first)."""

    id: UUID
    type: str
    payload: StoredPayload
    queue: str
    priority: int
    attempt: int
    max_attempts: int
    timeout_s: float | None
    # Seconds from when the job was due (enqueued, scheduled or retried) to this claim, by the
    # database's clock.
    waited_s: float


class OutcomeKind(StrEnum):
    """How an attempt ended, as the worker reports it (see the ``finish`` query)."""

    COMPLETED = "completed"
    FAILED = "failed"  # retried after a backoff while attempts remain
    FAILED_FINAL = "failed_final"  # no retry can help
    CANCELLED = "cancelled"  # stopped on a cancel request
    RELEASED = "released"  # interrupted by shutdown: pending again, the attempt given back
    SNOOZED = "snoozed"  # the handler asked to run later: pending, the attempt given back


@dataclass(slots=True)
class Outcome:
    job_id: UUID
    kind: OutcomeKind
    error: str | None = None
    retry_in_s: float = 0.0
    # The attempt this outcome belongs to. A job rescued and claimed again (even by the same
    # worker) has a higher attempt number, so a late outcome of the old run cannot land on
    # the new one. None skips that check (tools and tests acting on a worker's behalf).
    attempt: int | None = None
    # A completed attempt's return value as JSON text, checked and bounded by the worker
    # (None: no result, stored as NULL).
    result: str | None = None


@dataclass(slots=True)
class Recorded:
    """A job's state once an outcome was recorded."""

    job_id: UUID
    status: JobStatus
    attempts: int
    scheduled_at: datetime | None
    # Its dependants are still to be told of this outcome (Queue.finish(settle_now=False)).
    dependants_unsettled: bool = False


@dataclass(frozen=True, slots=True)
class Lease:
    """A job still leased to a worker after a heartbeat."""

    job_id: UUID
    attempt: int
    cancel_requested: bool


@dataclass(frozen=True, slots=True)
class Rescued:
    job_id: UUID
    status: JobStatus
    type: str
    queue: str
    lost_worker: str


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue's depth, as metrics report it."""

    queue: str
    due: int  # pending and due now
    scheduled: int  # pending, due later (scheduled or backing off)
    running: int
    oldest_due_age_s: float  # how long the oldest due job has waited; 0 when none


@dataclass(frozen=True, slots=True)
class JobsTableStats:
    """The jobs table's size and dead rows, as metrics report them (from the catalogue)."""

    heap_bytes: float
    toast_bytes: float
    index_bytes: float
    live_tuples: float  # the statistics collector's estimates, not counts
    dead_tuples: float
    vacuum_age_s: float | None  # since the last vacuum, manual or auto; None: never
    analyze_age_s: float | None  # since the last analyze, manual or auto; None: never


@dataclass(frozen=True, slots=True)
class Transition:
    """A job's status before and after a cancel or retry request."""

    before: JobStatus
    after: JobStatus


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed attempt to record. ``final`` skips the remaining attempts."""

    job_id: UUID
    error: str
    retry_in_s: float
    final: bool = False

    def outcome(self) -> Outcome:
        kind = OutcomeKind.FAILED_FINAL if self.final else OutcomeKind.FAILED
        return Outcome(self.job_id, kind, self.error, self.retry_in_s)
