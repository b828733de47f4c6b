"""SQLAlchemy models: the schema as Python, which Alembic's migrations must match exactly.

Runtime queries do not go through the ORM; they are the named statements in
``sql/queries.sql``. The models exist so that the schema has one typed description that the
migration tests compare against (``alembic check`` finds no difference).
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, BYTEA, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from queue_core.keys import ALL_SCOPES, MAX_BURST, MAX_RATE
from queue_core.limits import (
    MAX_CONCURRENCY_KEY_LENGTH,
    MAX_CONCURRENCY_LIMIT,
    MAX_KEY_RATE_BURST,
    MAX_KEY_RATE_PER_S,
    MAX_TIMEOUT_S,
    MIN_RATE_PER_S,
    SCHEDULED_AT_MAX,
    SCHEDULED_AT_MIN,
)
from queue_core.states import DEFAULT_MAX_ATTEMPTS, DEFAULT_PRIORITY, DEFAULT_QUEUE, JobStatus

# Deterministic constraint names, so migrations can refer to them and autogenerate compares cleanly.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TIMESTAMP_COLUMNS = (
    "scheduled_at",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "lease_expires_at",
    "cancel_requested_at",
)


def in_range(column: str) -> str:
    """The check that ``column`` is NULL or a timestamp the queue accepts (no infinity)."""
    return (
        f"({column} IS NULL OR ({column} >= '{SCHEDULED_AT_MIN.isoformat()}' "
        f"AND {column} < '{SCHEDULED_AT_MAX.isoformat()}'))"
    )


TIMESTAMPS_IN_RANGE = " AND ".join(in_range(column) for column in TIMESTAMP_COLUMNS)

_STATUS_VALUES = ", ".join(f"'{s.value}'" for s in JobStatus)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Job(Base):
    """One unit of work. The first ten columns are the original Go service's contract."""

    __tablename__ = "jobs"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    type: Mapped[str] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(50), server_default=JobStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(
        Integer, server_default=text(str(DEFAULT_MAX_ATTEMPTS))
    )
    error_message: Mapped[str | None] = mapped_column(Text)
    # Not before this instant; NULL means "as soon as possible" (the seed's contract).
    scheduled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    # What a correct queue needs beyond the seed.
    queue: Mapped[str] = mapped_column(String(255), server_default=DEFAULT_QUEUE)
    # Higher runs first among due jobs of one queue.
    priority: Mapped[int] = mapped_column(SmallInteger, server_default=text(str(DEFAULT_PRIORITY)))
    # The worker holding the job while it runs, and until when; a rescuer may take it back after.
    lease_owner: Mapped[str | None] = mapped_column(Text)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Seconds an attempt may run before it is cancelled; NULL: the handler's default.
    timeout_s: Mapped[float | None] = mapped_column(Float)
    # Set by a cancel request while the job runs; its worker stops it at the next heartbeat.
    cancel_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The handler's return value, stored with the completion.
    result: Mapped[Any | None] = mapped_column(JSONB)
    # The errors of past attempts: [{"attempt", "at", "error"}], newest last, bounded.
    errors: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    # A client's Idempotency-Key (namespaced by caller), a digest of its request, and until when
    # it holds. Unique while set (ix_jobs_idempotency_key).
    idempotency_key: Mapped[str | None] = mapped_column(Text)
    idempotency_fingerprint: Mapped[bytes | None] = mapped_column(BYTEA)
    idempotency_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Unique among pending and running jobs (unique_until NULL), or until unique_until.
    unique_key: Mapped[str | None] = mapped_column(Text)
    unique_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The job's limit group (concurrency_keys); NULL: none. Keyed jobs are claimed through
    # ix_jobs_claimable_keyed, so plain claims never walk past them.
    concurrency_key: Mapped[str | None] = mapped_column(String(MAX_CONCURRENCY_KEY_LENGTH))
    # Dependencies (job_dependencies) not completed yet; the job is claimable at 0 only.
    waiting_for: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # It has dependants not yet told of its outcome (queue_core.dependencies).
    dependants_unsettled: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))

    __table_args__ = (
        CheckConstraint(f"status IN ({_STATUS_VALUES})", name="status_valid"),
        CheckConstraint("max_attempts >= 1", name="max_attempts_positive"),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
        # The bounds of limits.py: see there why, and migration 0004 for how older rows were
        # brought inside them.
        CheckConstraint(
            f"timeout_s IS NULL OR (timeout_s > 0 AND timeout_s <= {MAX_TIMEOUT_S:g})",
            name="timeout_in_range",
        ),
        CheckConstraint(TIMESTAMPS_IN_RANGE, name="timestamps_in_range"),
        # Keeps the claim's "attempts + 1" within max_attempts (and so from overflowing);
        # every statement that makes a job pending leaves it an attempt (queries.sql).
        CheckConstraint(
            "status <> 'pending' OR attempts < max_attempts", name="pending_has_attempts_left"
        ),
        CheckConstraint(
            "status <> 'running' OR (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL)",
            name="running_has_lease",
        ),
        # The claim path: only pending rows are indexed, in the order workers take them, so
        # finished jobs (the bulk of the table over time) never slow a claim. Jobs with a
        # concurrency key or waiting for dependencies are kept out (migration 0012).
        Index(
            "ix_jobs_claimable",
            "queue",
            text("priority DESC"),
            text("coalesce(scheduled_at, created_at)"),
            postgresql_where=text(
                "status = 'pending' AND concurrency_key IS NULL AND waiting_for = 0"
            ),
        ),
        # The claim's keyed branch: pending keyed jobs whose dependencies are done.
        Index(
            "ix_jobs_claimable_keyed",
            "queue",
            text("priority DESC"),
            text("coalesce(scheduled_at, created_at)"),
            postgresql_where=text(
                "status = 'pending' AND concurrency_key IS NOT NULL AND waiting_for = 0"
            ),
        ),
        CheckConstraint("waiting_for >= 0", name="waiting_for_non_negative"),
        # A key's running (leased) jobs: what its concurrency limit is checked against. By
        # lease, not status, so that no other index can serve the count (migration 0013).
        Index(
            "ix_jobs_running_keyed",
            "concurrency_key",
            postgresql_where=text("lease_owner IS NOT NULL AND concurrency_key IS NOT NULL"),
        ),
        # Jobs waiting for dependencies, by queue: what queue_stats counts them from.
        Index(
            "ix_jobs_waiting",
            "queue",
            postgresql_where=text("status = 'pending' AND waiting_for > 0"),
        ),
        # The sweep of dependants whose parent's settle was lost (a worker died in between).
        Index(
            "ix_jobs_dependants_unsettled",
            "id",
            postgresql_where=text(
                "dependants_unsettled AND status IN ('completed', 'failed', 'cancelled')"
            ),
        ),
        # The rescuer's path: running jobs by lease expiry.
        Index(
            "ix_jobs_running_lease",
            "lease_expires_at",
            postgresql_where=text("status = 'running'"),
        ),
        CheckConstraint(
            "idempotency_key IS NULL"
            " OR (idempotency_fingerprint IS NOT NULL AND idempotency_expires_at IS NOT NULL)",
            name="idempotency_complete",
        ),
        # Partial: only rows with a key are indexed, so other jobs cost these nothing.
        Index(
            "ix_jobs_idempotency_key",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        # Listing failed and cancelled jobs (GET /v1/jobs?status=failed), newest first, with
        # what the listing's filters read: see migration 0009 for why this is its only index.
        Index(
            "ix_jobs_failed_cancelled",
            "id",
            postgresql_include=["status", "type", "queue", "created_at", "finished_at"],
            postgresql_where=text("status IN ('failed', 'cancelled')"),
        ),
        Index(
            "ix_jobs_unique_key",
            "unique_key",
            unique=True,
            postgresql_where=text(
                "unique_key IS NOT NULL"
                " AND (unique_until IS NOT NULL OR status IN ('pending', 'running'))"
            ),
        ),
    )


class ConcurrencyKey(Base):
    """One limit group's limits and state, shared by every worker (migration 0012)."""

    __tablename__ = "concurrency_keys"

    key: Mapped[str] = mapped_column(String(MAX_CONCURRENCY_KEY_LENGTH), primary_key=True)
    # The latest enqueue's limits; NULL: no such limit.
    concurrency_limit: Mapped[int | None] = mapped_column(Integer)
    rate_per_s: Mapped[float | None] = mapped_column(Float)
    rate_burst: Mapped[int | None] = mapped_column(Integer)
    # The rate limit's GCRA theoretical arrival time. (Running jobs are counted, not kept
    # here: claim_keyed.)
    tat: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint(
            f"(concurrency_limit IS NULL OR concurrency_limit BETWEEN 1 AND "
            f"{MAX_CONCURRENCY_LIMIT}) AND (rate_per_s IS NULL OR rate_per_s >= "
            f"{MIN_RATE_PER_S!r} AND rate_per_s <= {MAX_KEY_RATE_PER_S:g}) AND "
            f"(rate_burst IS NULL OR rate_burst BETWEEN 1 AND {MAX_KEY_RATE_BURST})",
            name="limits_bounded",
        ),
        # Finite and in the jobs' range: "tat - now()" raises for an infinity before
        # PostgreSQL 17, which would fail every claim of the key's queues (migration 0017).
        CheckConstraint(in_range("tat"), name="tat_in_range"),
    )


class JobDependency(Base):
    """Job ``job_id`` runs only once ``depends_on`` completed (``satisfied``)."""

    __tablename__ = "job_dependencies"

    # No foreign keys on purpose: one referencing jobs puts its triggers on every update of
    # every job (claim, finish), and a plain job would pay for them. An edge whose job was
    # deleted (retention) reads as a dependency with no status.
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    depends_on: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, index=True)
    satisfied: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))


class QueueState(Base):
    """A queue that has been paused or resumed; a queue without a row runs."""

    __tablename__ = "queues"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    # Workers claim nothing from the queue while set.
    paused_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WorkerRecord(Base):
    """A live worker, registered at start, seen at each beat, removed at shutdown."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    host: Mapped[str] = mapped_column(Text)
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[list[str]] = mapped_column(ARRAY(Text))
    task_types: Mapped[list[str]] = mapped_column(ARRAY(Text))
    concurrency: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_seen_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )


class ScheduleRecord(Base):
    """A periodic job declared with its handler (queue_core.schedules): definition and state."""

    __tablename__ = "schedules"
    __table_args__ = (
        CheckConstraint("(cron IS NULL) <> (every_s IS NULL)", name="cron_or_every"),
        CheckConstraint("missed IN ('once', 'skip')", name="missed"),
    )

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    queue: Mapped[str] = mapped_column(String(255))
    cron: Mapped[str | None] = mapped_column(Text)
    every_s: Mapped[float | None] = mapped_column(Float)
    tz: Mapped[str] = mapped_column(Text)
    missed: Mapped[str] = mapped_column(Text)
    grace_s: Mapped[float] = mapped_column(Float)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    paused_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The watermark: the latest tick dealt with (run or skipped); each tick moves it once.
    last_tick_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_job_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


_SCOPE_VALUES = ", ".join(f"'{s.value}'" for s in ALL_SCOPES)


class ApiKey(Base):
    """An API key (``queue_core.keys``): its SHA-256, never the key itself."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    # tq_ + 8 characters: stored in clear, to find the row and to name the key in listings.
    prefix: Mapped[str] = mapped_column(String(11))
    key_hash: Mapped[bytes] = mapped_column(BYTEA)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    # NULL: every queue.
    queues: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Written behind by the API, at most once a minute per key and replica.
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The key's own rate limits (queue_core.keys.RateLimits); NULL: no such limit.
    requests_per_s: Mapped[float | None] = mapped_column(Float)
    jobs_per_s: Mapped[float | None] = mapped_column(Float)
    requests_burst: Mapped[int | None] = mapped_column(Integer)
    jobs_burst: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        UniqueConstraint("name"),
        UniqueConstraint("prefix"),
        CheckConstraint("octet_length(key_hash) = 32", name="key_hash_is_sha256"),
        CheckConstraint(
            f"cardinality(scopes) >= 1 AND scopes <@ ARRAY[{_SCOPE_VALUES}]::text[]",
            name="scopes_known",
        ),
        CheckConstraint("queues IS NULL OR cardinality(queues) >= 1", name="queues_not_empty"),
        CheckConstraint(
            f"(requests_per_s IS NULL OR requests_per_s >= {MIN_RATE_PER_S!r} AND "
            f"requests_per_s <= {MAX_RATE}) AND (jobs_per_s IS NULL OR jobs_per_s >= "
            f"{MIN_RATE_PER_S!r} AND jobs_per_s <= {MAX_RATE}) "
            f"AND (requests_burst IS NULL OR requests_burst BETWEEN 1 AND {MAX_BURST}) "
            f"AND (jobs_burst IS NULL OR jobs_burst BETWEEN 1 AND {MAX_BURST})",
            name="limits_bounded",
        ),
    )


class ApiKeyRateBucket(Base):
    """One key's bucket for one limit, shared by every API replica (``queue_core.keys``).
    UNLOGGED: rewritten on every refill; lost in a crash, which only refills every bucket."""

    __tablename__ = "api_key_rate_buckets"

    prefix: Mapped[str] = mapped_column(
        String(11), ForeignKey("api_keys.prefix", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(Text, primary_key=True)  # 'requests' or 'jobs'
    # The generic cell rate algorithm's theoretical arrival time.
    tat: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # What the latest take granted: RETURNING reads it back (it shows only new values).
    granted: Mapped[int] = mapped_column(Integer, server_default=text("0"))

    __table_args__ = (
        CheckConstraint("kind IN ('requests', 'jobs')", name="kind"),
        # -infinity is a full bucket; infinity fails the key's every request (migration 0018).
        CheckConstraint("tat <> 'infinity'::timestamptz", name="tat_not_infinity"),
        {"prefixes": ["UNLOGGED"]},
    )


class ConsoleSignOut(Base):
    """A web console session signed out before it expired (``queue_api.ui.sessions``): a
    surviving copy of its cookie is refused until then, when the row may go."""

    __tablename__ = "console_sign_outs"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
