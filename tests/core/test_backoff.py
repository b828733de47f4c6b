"""Backoff: exponential ceilings with equal jitter, capped. Pure, so no database."""

import math
import random
import sys

import pytest

from queue_core.retry import DEFAULT_BASE_S, DEFAULT_CAP_S, Backoff


def test_the_ceiling_doubles_per_attempt_up_to_the_cap() -> None:
    backoff = Backoff(base_s=1.0, cap_s=20.0)

    assert [backoff.ceiling(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0]


def test_the_defaults_are_one_second_doubling_to_five_minutes() -> None:
    backoff = Backoff()

    assert (backoff.base_s, backoff.cap_s) == (DEFAULT_BASE_S, DEFAULT_CAP_S) == (1.0, 300.0)
    assert backoff.ceiling(1) == 1.0
    assert backoff.ceiling(9) == 256.0
    assert backoff.ceiling(10) == 300.0


@pytest.mark.parametrize("attempt", [0, -1, -1000])
def test_attempts_below_one_get_the_base(attempt: int) -> None:
    assert Backoff(base_s=0.5, cap_s=10.0).ceiling(attempt) == 0.5


@pytest.mark.parametrize("seed", range(5))
def test_the_delay_lies_between_half_the_ceiling_and_the_ceiling(seed: int) -> None:
    backoff = Backoff(base_s=0.25, cap_s=60.0)
    rng = random.Random(seed)  # noqa: S311 - seeded for a reproducible test

    for attempt in range(1, 20):
        ceiling = backoff.ceiling(attempt)
        for _ in range(50):
            assert ceiling / 2 <= backoff.delay(attempt, rng) <= ceiling


def test_the_delay_is_jittered() -> None:
    backoff = Backoff(base_s=1.0, cap_s=60.0)
    rng = random.Random(1)  # noqa: S311 - seeded for a reproducible test

    delays = {backoff.delay(4, rng) for _ in range(100)}

    assert len(delays) > 90
    assert min(delays) < 5.0 < max(delays)  # both halves of [4, 8] are used


def test_the_delay_without_an_rng_uses_the_shared_one() -> None:
    backoff = Backoff(base_s=2.0, cap_s=60.0)

    assert all(2.0 <= backoff.delay(2) <= 4.0 for _ in range(100))


@pytest.mark.parametrize("attempt", [63, 64, 1_000, 10**6, sys.maxsize, 10**100])
def test_huge_attempt_numbers_do_not_overflow(attempt: int) -> None:
    backoff = Backoff(base_s=1.0, cap_s=300.0)

    assert backoff.ceiling(attempt) == 300.0
    delay = backoff.delay(attempt, random.Random(0))  # noqa: S311 - seeded, reproducible
    assert math.isfinite(delay)
    assert 150.0 <= delay <= 300.0


def test_a_huge_base_is_still_capped() -> None:
    backoff = Backoff(base_s=1e300, cap_s=3600.0)

    assert backoff.ceiling(10**6) == 3600.0
