"""Errors the queue raises to its callers; each service maps them to its own responses."""

from uuid import UUID


class QueueError(Exception):
    """Base class of every error queue_core raises on purpose."""


class DatabaseUnavailableError(QueueError):
    """PostgreSQL cannot be reached or dropped the connection. Transient: retry later."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"database unavailable: {type(cause).__name__}")
        self.cause = cause


class InvalidJobError(QueueError):
    """PostgreSQL cannot store the job as given (a NUL character in text or JSON, an instant
    outside the years it can represent). The caller's input is at fault, not the database."""


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
