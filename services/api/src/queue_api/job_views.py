"""Response bodies of the v1 job reads: a page of job summaries and one whole job."""

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec

from queue_api.schemas import ErrorDetail
from queue_core.bulk import MAX_BULK_SCAN
from queue_core.db import UndecodableJson
from queue_core.jobs import Dependency, JobRecord, JobSummary
from queue_core.listing import InvalidCursorError, decode_cursor
from queue_core.queue import Queue
from queue_core.states import JobStatus


def _json(value: Any) -> Any:  # noqa: ANN401 - any stored JSON value
    """A stored JSON value as the API shows it: null for one nested too deeply to read."""
    return None if isinstance(value, UndecodableJson) else value


class JobSummaryView(msgspec.Struct, kw_only=True):
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

    @classmethod
    def of(cls, job: JobSummary) -> "JobSummaryView":
        return cls(
            id=job.id,
            type=job.type,
            queue=job.queue,
            status=job.status,
            priority=job.priority,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            created_at=job.created_at,
            scheduled_at=job.scheduled_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            error_message=job.error_message,
        )


class JobPageView(msgspec.Struct, kw_only=True):
    """``GET /v1/jobs``: one page, newest first."""

    jobs: list[JobSummaryView]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(
            description=(
                "Pass as `cursor` (with the same filters) for the next page; null on the last"
            ),
            examples=["AZPhuLJqcxG8XYJ3CK6jQg"],
        ),
    ]


class DependencyView(msgspec.Struct, kw_only=True):
    """A job this one depends on."""

    id: UUID
    status: Annotated[
        JobStatus | None, msgspec.Meta(description="Its status now; null: deleted since")
    ]
    completed: Annotated[
        bool, msgspec.Meta(description="It completed: this job no longer waits for it")
    ]

    @classmethod
    def of(cls, dependency: Dependency) -> "DependencyView":
        return cls(id=dependency.id, status=dependency.status, completed=dependency.satisfied)


class JobView(msgspec.Struct, kw_only=True):
    """``GET /v1/jobs/{id}``: every field of a job."""

    id: UUID
    type: str
    payload: Annotated[
        Any, msgspec.Meta(description="The job's input; null only if nested too deeply to read")
    ]
    queue: str
    priority: int
    status: JobStatus
    attempts: Annotated[int, msgspec.Meta(description="Runs started")]
    max_attempts: int
    scheduled_at: datetime | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    worker: Annotated[
        str | None, msgspec.Meta(description="The worker running it (while running only)")
    ]
    lease_expires_at: Annotated[
        datetime | None,
        msgspec.Meta(description="While running: when another worker may take it back"),
    ]
    timeout_s: float | None
    cancel_requested_at: datetime | None
    error_message: Annotated[str | None, msgspec.Meta(description="The last failure")]
    result: Annotated[Any, msgspec.Meta(description="The handler's return value, once completed")]
    errors: Annotated[
        list[Any],
        msgspec.Meta(
            description=(
                'The errors of past attempts, oldest first: {"attempt", "at", "error"} each'
            )
        ),
    ]
    unique_key: Annotated[
        str | None, msgspec.Meta(description="The job's unique key (POST /v1/jobs), if any")
    ] = None
    unique_until: Annotated[
        datetime | None,
        msgspec.Meta(
            description=(
                "Until when it holds unique_key whatever its status (unique_for_s); null: "
                "while pending or running"
            )
        ),
    ] = None

    concurrency_key: Annotated[
        str | None,
        msgspec.Meta(description="The key whose concurrency and rate limits the job obeys"),
    ] = None
    waiting_for: Annotated[
        int,
        msgspec.Meta(
            description=("How many of depends_on have not completed yet: the job runs at 0 only")
        ),
    ] = 0
    depends_on: Annotated[
        list[DependencyView],
        msgspec.Meta(description="The jobs this one waits for, with their status, by id"),
    ] = msgspec.field(default_factory=list)

    @classmethod
    def of(cls, job: JobRecord, dependencies: Sequence[Dependency] = ()) -> "JobView":
        running = job.status is JobStatus.RUNNING
        errors = _json(job.errors)
        return cls(
            id=job.id,
            type=job.type,
            payload=_json(job.payload),
            queue=job.queue,
            priority=job.priority,
            status=job.status,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            scheduled_at=job.scheduled_at,
            created_at=job.created_at,
            updated_at=job.updated_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            worker=job.lease_owner if running else None,
            lease_expires_at=job.lease_expires_at if running else None,
            timeout_s=job.timeout_s,
            cancel_requested_at=job.cancel_requested_at,
            error_message=job.error_message,
            result=_json(job.result),
            errors=errors if isinstance(errors, list) else [],
            unique_key=job.unique_key,
            unique_until=job.unique_until,
            concurrency_key=job.concurrency_key,
            waiting_for=job.waiting_for,
            depends_on=[DependencyView.of(d) for d in dependencies],
        )


async def job_view(queue: Queue, job: JobRecord) -> JobView:
    """``job`` as GET /v1/jobs/{id} shows it, with what it depends on."""
    return JobView.of(job, await queue.dependencies(job.id))


# -- bulk actions (POST /v1/jobs/cancel, /v1/jobs/retry) -------------------------------------

_Names = Annotated[list[str], msgspec.Meta(min_length=1, max_length=100)]
_Instant = Annotated[
    datetime,
    msgspec.Meta(
        description="RFC 3339 with an offset, from 1970-01-01T00:00:00Z up to 2200-01-01",
        examples=["2026-12-04T10:00:00Z"],
    ),
]


class JobBulkAction(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Which jobs to cancel or retry: GET /v1/jobs's filters, and how many at most."""

    limit: Annotated[
        int,
        msgspec.Meta(ge=1, le=10_000, description="Change at most this many jobs", examples=[500]),
    ]
    status: (
        Annotated[
            list[JobStatus],
            msgspec.Meta(
                min_length=1,
                max_length=5,
                description=(
                    "Only jobs in these statuses (cancel acts on pending and running jobs, "
                    "retry on failed and cancelled ones; default: all of those)"
                ),
            ),
        ]
        | None
    ) = None
    type: Annotated[_Names, msgspec.Meta(description="Only jobs of these types")] | None = None
    queue: Annotated[_Names, msgspec.Meta(description="Only jobs of these queues")] | None = None
    created_after: _Instant | None = None
    created_before: _Instant | None = None
    finished_after: _Instant | None = None
    finished_before: _Instant | None = None
    cursor: (
        Annotated[
            str,
            msgspec.Meta(
                max_length=64,
                description=(
                    "`next_cursor` of the previous answer (with the same filters): go on with "
                    "older jobs from where its walk stopped"
                ),
                examples=["AZPhuLJqcxG8XYJ3CK6jQg"],
            ),
        ]
        | None
    ) = None

    def problems(self) -> list[ErrorDetail]:
        """The cursor's: one this API made. The filter's own checks (offsets, ranges, text) are
        job_filter's."""
        if self.cursor is None:
            return []
        try:
            decode_cursor(self.cursor)
        except InvalidCursorError as exc:
            return [ErrorDetail(message=str(exc), key="cursor", source="body")]
        return []


class JobBulkResult(msgspec.Struct, kw_only=True):
    affected: Annotated[
        int, msgspec.Meta(description="Jobs cancelled (or asked to stop), or retried")
    ]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(
            description=(
                "Null: every job the filter matches (older than `cursor`, if given) was walked. "
                "Else the action stopped at `limit` or at the most rows one action reads "
                f"({MAX_BULK_SCAN:,}), even with `affected` 0: pass it as `cursor` (with the "
                "same filters) to go on"
            ),
            examples=["AZPhuLJqcxG8XYJ3CK6jQg"],
        ),
    ]
