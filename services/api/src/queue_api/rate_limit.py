"""Rate limits per API key, shared by every API replica: 429 with ``Retry-After`` past them.

A key may limit its requests a second (every authenticated request, checked by auth.Authorizer) and
the jobs it enqueues a second (a batch of N counts N), each with a burst. The tokens live in one
bucket per key and limit in PostgreSQL (:meth:`queue_core.keys.KeyStore.take_tokens`), so the
limit holds for the whole fleet. Asking the database on every request would cost a statement a
request; instead a replica *leases* tokens in chunks of about 50 ms of the key's rate (at least
one, at most a quarter of the burst) and spends them locally. A leased token it has not spent
within ``LEASE_S`` is dropped, never returned.

Precision, across any number of replicas: in any interval of T seconds a key gets at most
``burst + rate * (T + LEASE_S)`` tokens, since every token spent was taken from the shared
bucket at most ``LEASE_S`` earlier. The other way, a key near its limit may be refused while
another replica still holds up to one chunk it has not spent. A batch of more jobs than the
jobs burst can never fit: it is refused with 400, not 429, so that no client retries it forever.

If the database cannot be reached, a request is let through uncounted
(``queue_api_rate_limit_unchecked_total``): the request itself then reports the outage, and the
probes and ``/metrics`` keep working.
"""

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Final

from litestar.exceptions import HTTPException, TooManyRequestsException
from prometheus_client import Counter

from queue_core.errors import TransientDatabaseError
from queue_core.keys import KeyInfo, KeyStore, RateKind, RateLimit
from queue_core.metric_labels import OTHER_LABEL

LEASE_S: Final = 1.0
CHUNK_S: Final = 0.05
MAX_KEY_LABELS: Final = 200  # key names are made by admins, but a label set must stay bounded

KEY_REQUESTS = Counter(
    "queue_api_key_requests_total",
    f"Requests let in, by API key name (past {MAX_KEY_LABELS} names: 'other').",
    ["key"],
)
KEY_JOBS = Counter(
    "queue_api_key_jobs_total",
    f"Jobs accepted for enqueueing, by API key name (past {MAX_KEY_LABELS} names: 'other').",
    ["key"],
)
RATE_LIMITED = Counter(
    "queue_api_rate_limited_total",
    "Requests refused with 429 by a key's rate limit, by key name and limit (requests, jobs).",
    ["key", "limit"],
)
UNCHECKED = Counter(
    "queue_api_rate_limit_unchecked_total",
    "Requests let through without a rate-limit check because the database was unreachable.",
)


class _KeyCounters:
    """A key's children of the two counters, looked up once per name (``labels()`` takes a
    lock and builds a tuple on every call): the first ``MAX_KEY_LABELS`` names have their own,
    later ones share ``other``'s."""

    __slots__ = ("jobs", "label", "requests")

    def __init__(self, label: str) -> None:
        self.label = label
        self.requests = KEY_REQUESTS.labels(label)
        self.jobs = KEY_JOBS.labels(label)


class _CountersByKey:
    def __init__(self) -> None:
        self._named: dict[str, _KeyCounters] = {}
        self._other: _KeyCounters | None = None

    def __call__(self, name: str) -> _KeyCounters:
        counters = self._named.get(name)
        if counters is not None:
            return counters
        if len(self._named) < MAX_KEY_LABELS:
            counters = self._named[name] = _KeyCounters(name)
            return counters
        if self._other is None:
            self._other = _KeyCounters(OTHER_LABEL)
        return self._other


_key_counters = _CountersByKey()


def chunk_of(limit: RateLimit) -> int:
    """How many tokens a replica leases at a time."""
    return max(1, min(math.floor(limit.per_s * CHUNK_S), limit.burst // 4))


@dataclass
class _Lease:
    tokens: int = 0
    expires_at: float = 0.0  # time.monotonic()
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def valid(self, now: float) -> int:
        return self.tokens if now < self.expires_at else 0


class RateLimiter:
    """One per app: leases tokens from the keys' shared buckets (see the module's docstring)."""

    def __init__(self) -> None:
        self._store: KeyStore | None = None
        self._leases: dict[tuple[str, RateKind], _Lease] = {}

    def attach(self, store: KeyStore) -> None:
        self._store = store

    async def admit_request(self, key: KeyInfo) -> None:
        """Count one request of ``key``; 429 past its requests limit."""
        counters = _key_counters(key.name)
        await self._spend(key, RateKind.REQUESTS, 1, counters.label)
        counters.requests.inc()

    async def admit_jobs(self, key: KeyInfo | None, count: int) -> None:
        """Count ``count`` jobs to enqueue for ``key`` (None: auth is off); 429 past its jobs
        limit, 400 for a batch larger than its burst."""
        if key is None:
            return
        counters = _key_counters(key.name)
        await self._spend(key, RateKind.JOBS, count, counters.label)
        counters.jobs.inc(count)

    async def _spend(self, key: KeyInfo, kind: RateKind, count: int, label: str) -> None:
        limit = key.limits[kind]
        if limit is None:
            return
        if count > limit.burst:
            raise HTTPException(
                status_code=400,
                detail=(
                    f"this API key may enqueue at most {limit.burst} jobs at once (its jobs "
                    f"burst): send at most {limit.burst} jobs a request"
                ),
            )
        lease = self._leases.get((key.prefix, kind))
        if lease is None:
            lease = self._leases[key.prefix, kind] = _Lease()
        if self._spend_leased(lease, count):
            return
        async with lease.lock:  # one trip to the database per key and limit at a time
            if self._spend_leased(lease, count):
                return
            wait_s = await self._refill(key, kind, limit, lease, count)
            if wait_s is None or self._spend_leased(lease, count):
                return
        RATE_LIMITED.labels(label, kind.value).inc()
        raise TooManyRequestsException(
            detail=(
                f"this API key's {kind.value} limit is {limit.per_s:g}/s "
                f"(burst {limit.burst}): try again in {wait_s:.2f} s"
            ),
            headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
        )

    @staticmethod
    def _spend_leased(lease: _Lease, count: int) -> bool:
        if lease.valid(time.monotonic()) >= count:
            lease.tokens -= count
            return True
        return False

    async def _refill(
        self, key: KeyInfo, kind: RateKind, limit: RateLimit, lease: _Lease, count: int
    ) -> float | None:
        """Lease more tokens; the seconds to wait if still short, or None if unchecked."""
        if self._store is None:  # pragma: no cover - the lifespan attaches it before requests
            raise RuntimeError("RateLimiter used before attach()")
        now = time.monotonic()
        held = lease.valid(now)
        need = count - held
        try:
            grant = await self._store.take_tokens(
                key.prefix, kind, limit, want=max(need, chunk_of(limit)), need=need
            )
        except TransientDatabaseError:
            UNCHECKED.inc()
            return None
        if grant.granted:
            # Tokens still held keep their expiry, and the new ones share it: never later.
            lease.tokens = held + grant.granted
            lease.expires_at = lease.expires_at if held else now + LEASE_S
        return grant.wait_s
