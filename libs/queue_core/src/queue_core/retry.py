"""Backoff between attempts: exponential with "equal jitter", capped. Pure, so easy to test.

The delay after attempt n is uniform in [c/2, c] where c = min(cap, base * 2**(n-1)): it keeps
growing with n (the lower half is fixed) while the random half spreads retries of jobs that
failed together, e.g. after an outage, instead of sending them back as one wave.
"""

import random
from dataclasses import dataclass

DEFAULT_BASE_S = 1.0
DEFAULT_CAP_S = 300.0


@dataclass(frozen=True, slots=True)
class Backoff:
    base_s: float = DEFAULT_BASE_S
    cap_s: float = DEFAULT_CAP_S

    def ceiling(self, attempt: int) -> float:
        """Upper bound of the delay after failed attempt ``attempt`` (1-based):
        base, 2·base, 4·base, … up to the cap."""
        exponent = min(max(attempt - 1, 0), 62)  # 2**62 already dwarfs any cap; avoid overflow
        return float(min(self.cap_s, self.base_s * (2**exponent)))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        half = self.ceiling(attempt) / 2
        return half + half * (rng or _RNG).random()


_RNG = random.Random()  # noqa: S311 - jitter, not cryptography


# The one backoff every worker service uses after a transient database error (connection lost,
# deadlock, serialization failure) or a crash, and the completer between tries of a batch:
# 0.1 s, 0.2 s, 0.4 s, … up to 5 s, each with equal jitter, so replicas that lost the database
# together come back spread out instead of as one wave. 5 s keeps an outage's tail short: the
# first try after the database returns is at most 5 s late.
TRANSIENT_RETRY = Backoff(base_s=0.1, cap_s=5.0)


def jittered(seconds: float) -> float:
    """``seconds`` ±25 %: replicas started together drift apart instead of polling in step."""
    return seconds * _RNG.uniform(0.75, 1.25)
