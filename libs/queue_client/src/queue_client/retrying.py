"""When the client sends a request again, and after how long, and what a call's last try gives
(its decoded answer, or an error): shared by both clients, which only send and sleep.

A request is sent again on 503 (the API cannot reach its database), 502/504 (a proxy without
an API), 429 (the key's rate limit: after ``Retry-After``) and when no answer came. An answer
that never came is ambiguous (the API may have acted on the request), and so are 502 and 504:
a proxy answers them after it passed the request on (the API dropped the connection, or was
slower than the proxy's timeout). Those cases are retried only for requests that are safe to
repeat: reads, pauses, and enqueues, which always carry an ``Idempotency-Key`` so that a repeat
answers with the job the first one made. A connection that was refused or never opened sent
nothing, so any request is retried then. A bulk cancel or retry is not retried on any status:
the API commits it a batch at a time, so even its 503 may come after some jobs were changed.

Backoff is capped exponential with "equal jitter" (half fixed, half random), so that many
clients failing together do not come back together, and none comes back at once. No retry
starts past a call's ``deadline`` (the caller's, in ``wait()``).
"""

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import httpx

from queue_client.calls import Call
from queue_client.errors import ConnectionFailedError, UnexpectedResponseError, retry_after_s

T = TypeVar("T")

RETRIED_STATUSES = frozenset({429, 502, 503, 504})
# A proxy's answers once it passed the request on: the API may have acted on it.
_MAYBE_ACTED = frozenset({502, 504})

# Errors raised before the request left: nothing reached the API.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard the client tries. ``attempts`` counts the first try: 1 turns retries off."""

    attempts: int = 5
    base_delay_s: float = 0.25
    max_delay_s: float = 8.0
    # A Retry-After longer than this is not waited for: the error is raised instead.
    max_retry_after_s: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if not 0 <= self.base_delay_s <= self.max_delay_s:
            raise ValueError("need 0 <= base_delay_s <= max_delay_s")

    def backoff_s(self, retry: int) -> float:
        """The pause before retry number ``retry`` (1 for the first)."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0 ** (retry - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not secrets


NO_RETRY = RetryPolicy(attempts=1)


class Attempts:
    """The retry decisions for one logical call: after each try, the pause before the next, or
    None to stop (return the answer, or raise)."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        idempotent: bool,
        retry_statuses: bool,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = policy
        self._idempotent = idempotent
        self._retry_statuses = retry_statuses
        self._deadline = deadline
        self._clock = clock
        self.tries = 0

    def _next(self) -> float | None:
        self.tries += 1
        if self.tries >= self._policy.attempts:
            return None
        return self._policy.backoff_s(self.tries)

    def _before_deadline(self, pause: float | None) -> float | None:
        if pause is None or self._deadline is None:
            return pause
        return pause if self._clock() + pause < self._deadline else None

    def after_answer(self, response: httpx.Response) -> float | None:
        status = response.status_code
        unsafe = status in _MAYBE_ACTED and not self._idempotent
        if not self._retry_statuses or status not in RETRIED_STATUSES or unsafe:
            self.tries += 1
            return None
        pause = self._next()
        if pause is None:
            return None
        asked = retry_after_s(response)
        if asked is None:
            return self._before_deadline(pause)
        if asked > self._policy.max_retry_after_s:
            return None
        # At least what the server asked, plus a little jitter so waiters do not stampede.
        asked += random.uniform(0, self._policy.base_delay_s)  # noqa: S311
        return self._before_deadline(asked)

    def after_error(self, error: httpx.TransportError) -> float | None:
        if not self._idempotent and not isinstance(error, _NOT_SENT):
            self.tries += 1
            return None
        return self._before_deadline(self._next())


@dataclass(frozen=True, slots=True)
class Pause:
    """Sleep this long, then send the call again."""

    seconds: float


class Retrying(Generic[T]):
    """One call, from its first try to its result, without I/O. A client sends ``call``, hands
    what came back (an answer, or the transport's error) to :meth:`settle`, and sleeps the
    ``Pause`` it gets before sending again; anything else is the call's result."""

    def __init__(self, call: Call[T], policy: RetryPolicy, base_url: str) -> None:
        self._call = call
        self._base_url = base_url  # named in the error when no answer came
        self._attempts = Attempts(
            policy,
            idempotent=call.idempotent,
            retry_statuses=call.retry_statuses,
            deadline=call.deadline,
        )

    def settle(self, outcome: httpx.Response | httpx.RequestError) -> T | Pause:
        """The decoded answer (or the API's error, raised), or the pause before the next try;
        ``ConnectionFailedError`` when no answer came and the call may not be sent again,
        ``UnexpectedResponseError`` when one came that httpx could not read (a body that does
        not decompress)."""
        if isinstance(outcome, httpx.TransportError):
            pause = self._attempts.after_error(outcome)
            if pause is None:
                tries = self._attempts.tries
                raise ConnectionFailedError.of(outcome, self._base_url, tries) from outcome
        elif isinstance(outcome, httpx.RequestError):
            request = outcome.request
            detail = f"{request.method} {request.url.path}: {outcome}"
            raise UnexpectedResponseError(detail) from outcome
        else:
            pause = self._attempts.after_answer(outcome)
            if pause is None:
                return self._call.decode(outcome)
        return Pause(pause)
