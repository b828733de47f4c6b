"""Typed values that cross the queue's boundary: what callers enqueue and what they get back."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from queue_core.states import DEFAULT_MAX_ATTEMPTS, DEFAULT_PRIORITY, DEFAULT_QUEUE, JobStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class NewJob:
    """A job to enqueue. ``scheduled_at`` None means run as soon as a worker is free."""

    type: str
    payload: dict[str, Any]
    queue: str = DEFAULT_QUEUE
    priority: int = DEFAULT_PRIORITY
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    scheduled_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRecord:
    """A job as stored: what the status endpoint shows."""

    id: UUID
    type: str
    payload: dict[str, Any]
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


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimedJob:
    """A job leased to a worker. ``attempt`` counts this run (1 on the first)."""

    id: UUID
    type: str
    payload: dict[str, Any]
    queue: str
    priority: int
    attempt: int
    max_attempts: int
    created_at: datetime
    scheduled_at: datetime | None
    started_at: datetime


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed attempt to record. ``final`` skips the remaining attempts."""

    job_id: UUID
    error: str
    retry_in_s: float
    final: bool = False


@dataclass(frozen=True, slots=True)
class FailedOutcome:
    job_id: UUID
    status: JobStatus
    attempts: int
    scheduled_at: datetime | None
