"""Errors the queue raises to its callers; each service maps them to its own responses."""

from uuid import UUID


class QueueError(Exception):
    """Base class of every error queue_core raises on purpose."""


class TransientDatabaseError(QueueError):
    """The statement failed for a reason that passes: trying it again later may succeed. Every
    caller treats these alike (the API answers 503 with Retry-After, the worker's services back
    off); anything else is a bug or bad input, which retrying cannot fix."""

    def __init__(self, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.cause = cause


class DatabaseUnavailableError(TransientDatabaseError):
    """PostgreSQL cannot be reached or dropped the connection."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"database unavailable: {type(cause).__name__}", cause)


class DatabaseConflictError(TransientDatabaseError):
    """PostgreSQL aborted the statement to resolve a conflict with another transaction (a
    deadlock, a serialization failure): nothing was changed, and a retry normally succeeds."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"database conflict: {type(cause).__name__}", cause)


class InvalidJobError(QueueError):
    """PostgreSQL cannot store the job as given (a NUL character in text or JSON, an instant
    outside the years it can represent). The caller's input is at fault, not the database.

    The fields the schema bounds (a payload that is not a JSON object, or holds NaN, an
    infinity, a NUL or an unpaired surrogate; names, priority, ``max_attempts``,
    ``timeout_s``, ``scheduled_at``) are checked before any statement, and the message names
    the field: such a job fails alone, never the other jobs group-committed with it, and
    never the caller's transaction (``queue_core.transactional``), which may go on."""


class JobStateConflictError(QueueError):
    """The job's status does not allow the requested change (e.g. cancelling a completed job)."""

    def __init__(self, job_id: UUID, status: str, action: str, allowed: str) -> None:
        super().__init__(f"job {job_id} is {status}: only {allowed} jobs can be {action}")
        self.job_id = job_id
        self.status = status


class JobNotFoundError(QueueError):
    def __init__(self, job_id: UUID) -> None:
        super().__init__(f"job {job_id} not found")
        self.job_id = job_id


class IdempotencyKeyReusedError(QueueError):
    """An idempotency key still in its lifetime came with a request other than the one it was
    first used with: a client bug (one key per distinct request), never a retry."""

    def __init__(self) -> None:
        super().__init__(
            "this idempotency key was already used with a different request: use a new key "
            "for a new request, or send the first request again unchanged"
        )


class UniqueKeyHeldError(JobStateConflictError):
    """A job cannot go back to pending (a retry): another pending or running job has taken its
    unique key since it finished."""

    def __init__(self, job_id: UUID, action: str) -> None:
        QueueError.__init__(
            self,
            f"job {job_id} cannot be {action}: a pending or running job holds its unique key",
        )
        self.job_id = job_id
        self.status = "held"


class DependencyEndedError(JobStateConflictError):
    """A job cannot be retried while it waits for a dependency that will not complete: one
    that failed for good or was cancelled (and is not retried with it), or was deleted."""

    def __init__(
        self, job_id: UUID, status: str, dependency: UUID, dependency_status: str | None
    ) -> None:
        if dependency_status is None:
            why = f"its dependency {dependency} was deleted, so it can never run"
        else:
            why = f"its dependency {dependency} is {dependency_status}; retry that job first"
        QueueError.__init__(self, f"job {job_id} cannot be retried: {why}")
        self.job_id = job_id
        self.status = status
        self.dependency = dependency


class UnknownDependencyError(InvalidJobError):
    """A job was to depend on jobs that do not exist (never did, or deleted by retention)."""

    def __init__(self, job_ids: list[UUID]) -> None:
        shown = ", ".join(str(i) for i in job_ids[:10])
        more = f" and {len(job_ids) - 10} more" if len(job_ids) > 10 else ""
        super().__init__(f"depends_on names jobs that do not exist: {shown}{more}")
        self.job_ids = job_ids
