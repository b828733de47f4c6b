"""queuectl's exit codes, one per thing a script may want to tell apart
(docs/how-to/queuectl.md)."""

from typing import Final

from queue_client.errors import (
    ForbiddenError,
    NotFoundError,
    QueueError,
    RateLimitedError,
    UnauthorizedError,
    UnavailableError,
)

OK: Final = 0
API_ERROR: Final = 1  # the API refused the request (400, 409, 422, …), or a bulk was declined
USAGE: Final = 2  # a bad command line or config file (click's own code for usage errors)
NOT_FOUND: Final = 3  # no such job, queue schedule or key
AUTH: Final = 4  # no key, a wrong, revoked or expired one (401), or too little scope (403)
UNAVAILABLE: Final = 5  # no answer, or 503/429 still after the client's retries
# --wait: the job finished but did not complete, or had not finished when the time was up.
JOB_NOT_COMPLETED: Final = 6
WAIT_TIMED_OUT: Final = 7
INTERRUPTED: Final = 130  # Ctrl-C, as shells report SIGINT (128 + 2)


def for_error(error: QueueError) -> int:
    if isinstance(error, NotFoundError):
        return NOT_FOUND
    if isinstance(error, UnauthorizedError | ForbiddenError):
        return AUTH
    if isinstance(error, UnavailableError | RateLimitedError):
        return UNAVAILABLE
    return API_ERROR
