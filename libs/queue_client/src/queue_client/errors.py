"""The API's errors as exceptions: one class per thing a caller may want to handle, each
carrying what the API said (its JSON ``detail`` and, for a 400, ``extra``: the fields at fault).

Every error answer of the API is ``{"status_code", "detail", "extra"?}``; a body that is not
(a proxy's HTML page, say) still gives an error, with the start of that body as its detail.
"""

from collections.abc import Mapping, Sequence
from contextlib import suppress
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from queue_client.models import Job

_MAX_DETAIL_CHARS = 500  # of a body that is not the API's JSON


class QueueError(Exception):
    """Base class of every error this client raises about the queue or its API."""

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        extra: Sequence[Mapping[str, Any]] = (),
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status  # the HTTP status; None when no answer came
        self.extra = list(extra)  # a 400's fields at fault: {"key", "message", "source"} each
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        fields = "; ".join(
            f"{item.get('key', '?')}: {item.get('message', '')}" for item in self.extra
        )
        text = self.detail if not fields else f"{self.detail} ({fields})"
        return text if self.status is None else f"{self.status}: {text}"


class BadRequestError(QueueError):
    """400 (and 408, 413, 415): the request itself is wrong; ``extra`` names the fields."""


class UnauthorizedError(QueueError):
    """401: no API key, or an unknown, revoked or expired one."""


class ForbiddenError(QueueError):
    """403: the key lacks the scope, or may not use this queue."""


class NotFoundError(QueueError):
    """404: no such job, schedule or key."""


class ConflictError(QueueError):
    """409: the job's status does not allow this (or a key with this name exists)."""


class UnprocessableError(QueueError):
    """422: an idempotency key reused with a different job, or no worker serves the type."""


class RateLimitedError(QueueError):
    """429 after the client's own retries: the key's rate limit; see ``retry_after_s``."""


class UnavailableError(QueueError):
    """503 after the client's own retries: the API cannot reach its database."""


class ConnectionFailedError(UnavailableError):
    """No answer at all (refused, reset, timed out) after the client's own retries."""

    @classmethod
    def of(cls, error: httpx.TransportError, base_url: str, tries: int) -> "ConnectionFailedError":
        reason = str(error) or type(error).__name__
        if isinstance(error, httpx.TimeoutException):
            reason = f"timed out ({type(error).__name__})"
        plural = "try" if tries == 1 else "tries"
        return cls(f"no answer from {base_url} after {tries} {plural}: {reason}")


class UnexpectedResponseError(QueueError):
    """A success status whose body is not what this endpoint answers."""


class WaitTimeoutError(QueueError):
    """``wait()`` reached its deadline; ``job`` is the job as last seen, not finished."""

    def __init__(self, job: "Job", timeout_s: float) -> None:
        super().__init__(f"job {job.id} still {job.status} after {timeout_s:g} s")
        self.job = job


_BY_STATUS: Mapping[int, type[QueueError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    408: BadRequestError,
    409: ConflictError,
    413: BadRequestError,
    415: BadRequestError,
    422: UnprocessableError,
    429: RateLimitedError,
    502: UnavailableError,  # a proxy in front of the API without a live API behind it
    503: UnavailableError,
    504: UnavailableError,
}


def retry_after_s(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    try:
        now = parsedate_to_datetime(response.headers.get("Date", ""))
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None or now.tzinfo is None:
        return None
    return max((when - now).total_seconds(), 0.0)


def error_for(response: httpx.Response) -> QueueError:
    """The exception for an error answer."""
    status = response.status_code
    detail, extra = _detail(response)
    cls = _BY_STATUS.get(status, QueueError)
    return cls(detail, status=status, extra=extra, retry_after_s=retry_after_s(response))


def _detail(response: httpx.Response) -> tuple[str, list[Mapping[str, Any]]]:
    if response.is_redirect:  # an http:// URL to an https:// API, say: never followed
        target = response.headers["Location"]
        with suppress(httpx.InvalidURL):
            target = str(response.url.join(target))
        return f"redirected to {target}; the client does not follow redirects: fix the URL", []
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        raw_extra = body.get("extra")
        extra: list[Mapping[str, Any]] = (
            [e for e in raw_extra if isinstance(e, dict)] if isinstance(raw_extra, list) else []
        )
        return str(body["detail"]), extra
    if isinstance(body, dict) and isinstance(body.get("message"), str):  # /ready's shape
        return str(body["message"]), []
    text = response.text.strip()[:_MAX_DETAIL_CHARS]
    return text or response.reason_phrase or "no detail", []
