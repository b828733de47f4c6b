"""The client's retry decisions and queuectl's time parsing, as pure functions: which failure is
retried for which request, how long the pause is, and what a command line's ``1h`` means. The
behaviour against real processes is in test_retry_storm.py."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from queue_client import calls
from queue_client.cli.durations import parse_duration, parse_instant
from queue_client.errors import (
    ConnectionFailedError,
    NotFoundError,
    RateLimitedError,
    error_for,
    retry_after_s,
)
from queue_client.retrying import Attempts, Pause, Retrying, RetryPolicy

POLICY = RetryPolicy(attempts=4, base_delay_s=0.5, max_delay_s=2.0, max_retry_after_s=30)
REQUEST = httpx.Request("POST", "http://api/v1/jobs")


def answer(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, json={"detail": "x"}, request=REQUEST)


def test_backoff_doubles_up_to_its_cap_with_half_of_it_random() -> None:
    for retry, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 2.0), (10, 2.0)]:
        pauses = [POLICY.backoff_s(retry) for _ in range(200)]
        assert all(ceiling / 2 <= p <= ceiling for p in pauses), (retry, min(pauses), max(pauses))
        assert len(set(pauses)) > 1, "jittered"


def test_statuses_worth_retrying_are_retried_until_the_attempts_run_out() -> None:
    attempts = Attempts(POLICY, idempotent=False, retry_statuses=True)
    assert [attempts.after_answer(answer(503)) is not None for _ in range(4)] == [
        True,
        True,
        True,
        False,  # the fourth try was the last
    ]
    for status in (200, 201, 400, 401, 404, 409, 422, 500):
        assert (
            Attempts(POLICY, idempotent=True, retry_statuses=True).after_answer(answer(status))
            is None
        ), status
    probe = Attempts(POLICY, idempotent=True, retry_statuses=False)
    assert probe.after_answer(answer(503)) is None  # /ready: the 503 is the answer


def test_retry_after_is_honoured_and_a_long_one_is_not_waited_for() -> None:
    waited = Attempts(POLICY, idempotent=False, retry_statuses=True).after_answer(
        answer(429, {"Retry-After": "3"})
    )
    assert waited is not None
    assert 3 <= waited <= 3 + POLICY.base_delay_s
    too_long = Attempts(POLICY, idempotent=False, retry_statuses=True)
    assert too_long.after_answer(answer(429, {"Retry-After": "120"})) is None
    limited = error_for(answer(429, {"Retry-After": "120"}))
    assert isinstance(limited, RateLimitedError)
    assert limited.retry_after_s == 120


def test_retry_after_as_an_http_date() -> None:
    dated = answer(
        503,
        {"Retry-After": "Fri, 04 Dec 2026 10:00:05 GMT", "Date": "Fri, 04 Dec 2026 10:00:00 GMT"},
    )
    assert retry_after_s(dated) == 5
    assert retry_after_s(answer(503, {"Retry-After": "soon"})) is None
    # A date against a Date header that is not one: unknown, the backoff's own pause then.
    when = "Fri, 04 Dec 2026 10:00:05 GMT"
    for date in ("garbage", ""):
        odd = answer(503, {"Retry-After": when, "Date": date})
        assert retry_after_s(odd) is None
        assert error_for(odd).retry_after_s is None
        assert Attempts(POLICY, idempotent=True, retry_statuses=True).after_answer(odd)


def test_an_answer_that_never_came_is_resent_only_when_that_is_safe() -> None:
    lost = httpx.ReadTimeout("timed out", request=REQUEST)
    never_sent = httpx.ConnectError("refused", request=REQUEST)
    assert Attempts(POLICY, idempotent=True, retry_statuses=True).after_error(lost) is not None
    assert Attempts(POLICY, idempotent=False, retry_statuses=True).after_error(lost) is None
    assert Attempts(POLICY, idempotent=False, retry_statuses=True).after_error(never_sent)


def test_no_retry_starts_past_the_callers_deadline() -> None:
    now = 100.0
    attempts = Attempts(
        POLICY, idempotent=True, retry_statuses=True, deadline=101.0, clock=lambda: now
    )
    assert attempts.after_answer(answer(503)) is not None  # at most 0.5 s: before the deadline
    now = 100.9
    assert attempts.after_answer(answer(503)) is None  # at least 0.5 s: past it
    lost = httpx.ReadTimeout("timed out", request=REQUEST)
    assert (
        Attempts(POLICY, idempotent=True, retry_statuses=True, deadline=100.0).after_error(lost)
        is None
    )


def test_a_call_settles_to_its_decoded_answer_its_error_or_a_pause() -> None:
    probe = Retrying(calls.health(), POLICY, "http://api")
    assert isinstance(probe.settle(answer(503)), Pause)
    ok = httpx.Response(200, json={"message": "ok"}, request=REQUEST)
    assert probe.settle(ok) == "ok"
    with pytest.raises(NotFoundError):
        Retrying(calls.get_job("x"), POLICY, "http://api").settle(answer(404))
    # A cancel that may have reached the API is not sent again: the first lost answer ends it.
    cancel = Retrying(calls.cancel_job("x"), POLICY, "http://api")
    lost = httpx.ReadTimeout("timed out", request=REQUEST)
    with pytest.raises(ConnectionFailedError, match="no answer from http://api after 1 try"):
        cancel.settle(lost)


def test_a_policy_must_try_at_least_once() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(attempts=0)


def test_durations_and_instants_as_typed() -> None:
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("2d") == timedelta(days=2)
    assert parse_duration("1.5h") == timedelta(minutes=90)
    for bad in ("", "10", "1x", "h", "-1h", "1h junk", "99999999w"):
        with pytest.raises(ValueError, match=r"duration|longer"):
            parse_duration(bad)
    now = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    assert parse_instant("+10m", now) == now + timedelta(minutes=10)
    assert parse_instant("2026-12-04T11:00:00Z", now) == datetime(2026, 12, 4, 11, tzinfo=UTC)
    assert parse_instant("2026-12-04T11:00:00").tzinfo is not None  # local time, made explicit
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_instant("tomorrow", now)
