"""The shared rate-limit bucket of a key (``take_rate_tokens``): the generic cell rate algorithm
in one statement. It gives at most the burst at once and the rate after, says how long to wait,
refills with time, is made full when missing (UNLOGGED: a crash empties the table), and holds
exactly when many pools, as API replicas would, take from it at once."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from queue_core.db import create_pool
from queue_core.keys import KeyStore, RateKind, RateLimit, RateLimits
from queue_core.limits import MIN_RATE_PER_S

LIMIT = RateLimit(per_s=20.0, burst=10)


@pytest.fixture(name="store")
async def fx_store(db_url: str) -> AsyncIterator[KeyStore]:
    pool = await create_pool(db_url, max_size=4)
    yield KeyStore(pool)
    await pool.close()


async def _prefix(store: KeyStore) -> str:
    new = await store.create(
        name=f"k-{uuid.uuid4().hex[:8]}", scopes=["jobs:read"], limits=RateLimits(requests=LIMIT)
    )
    return new.info.prefix


async def test_a_full_bucket_gives_its_burst_then_says_how_long_to_wait(store: KeyStore) -> None:
    # At one in 10 s, so that the moments between the statements (the database's clock runs
    # on) cannot change a grant on a loaded machine, while a token's difference would. The
    # waits are bounded by the time measured around the calls.
    slow = RateLimit(per_s=0.1, burst=10)
    prefix = await _prefix(store)

    started = time.monotonic()
    first = await store.take_tokens(prefix, RateKind.REQUESTS, slow, want=8, need=8)
    second = await store.take_tokens(prefix, RateKind.REQUESTS, slow, want=5, need=5)
    empty = await store.take_tokens(prefix, RateKind.REQUESTS, slow, want=4, need=4)
    elapsed = time.monotonic() - started

    assert elapsed < 10.0, "a token refilled meanwhile: the grants below would be off by one"
    assert (first.granted, first.wait_s) == (8, 0.0)
    assert second.granted == 2  # the rest of the burst
    assert 30.0 - elapsed <= second.wait_s <= 30.0  # 3 more at one in 10 s
    assert empty.granted == 0
    assert 40.0 - elapsed <= empty.wait_s <= 40.0


async def test_an_empty_bucket_refills_at_its_rate(store: KeyStore) -> None:
    prefix = await _prefix(store)
    before_drain = time.monotonic()
    drained = await store.take_tokens(prefix, RateKind.REQUESTS, LIMIT, want=10, need=10)
    after_drain = time.monotonic()
    await asyncio.sleep(0.25)  # about 5 tokens at 20/s
    before_refill = time.monotonic()
    refilled = await store.take_tokens(prefix, RateKind.REQUESTS, LIMIT, want=10, need=1)
    after_refill = time.monotonic()

    assert drained.granted == 10
    # The statements read the clock somewhere within the calls: at least the shortest time
    # between them refilled, at most the longest.
    least = int((before_refill - after_drain) * LIMIT.per_s)
    most = min(LIMIT.burst, int((after_refill - before_drain) * LIMIT.per_s))
    assert 5 <= least <= refilled.granted <= most  # the sleep alone refills 5


async def test_limits_of_two_kinds_and_two_keys_are_separate_buckets(store: KeyStore) -> None:
    a, b = await _prefix(store), await _prefix(store)

    takes = [
        await store.take_tokens(prefix, kind, LIMIT, want=10, need=10)
        for prefix in (a, b)
        for kind in RateKind
    ]

    assert [t.granted for t in takes] == [10, 10, 10, 10]


async def test_a_lost_bucket_comes_back_full(store: KeyStore, db_url: str) -> None:
    prefix = await _prefix(store)
    await store.take_tokens(prefix, RateKind.JOBS, LIMIT, want=10, need=10)
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("TRUNCATE api_key_rate_buckets")  # what a crash does to it
    finally:
        await conn.close()

    again = await store.take_tokens(prefix, RateKind.JOBS, LIMIT, want=10, need=10)

    assert again.granted == 10


async def test_many_pools_taking_at_once_never_get_more_than_burst_plus_rate(
    db_url: str,
) -> None:
    pools = [await create_pool(db_url, max_size=2) for _ in range(4)]
    stores = [KeyStore(pool) for pool in pools]
    prefix = await _prefix(stores[0])
    granted = 0
    run_s = 1.5

    async def take(store: KeyStore, until: float) -> None:
        nonlocal granted
        while time.monotonic() < until:
            grant = await store.take_tokens(prefix, RateKind.REQUESTS, LIMIT, want=3, need=3)
            granted += grant.granted  # after the await: `granted +=` across it loses updates

    try:
        started = time.monotonic()
        await asyncio.gather(*(take(s, started + run_s) for s in stores for _ in range(2)))
        elapsed = time.monotonic() - started
    finally:
        for pool in pools:
            await pool.close()

    assert granted <= LIMIT.burst + LIMIT.per_s * elapsed
    assert granted >= LIMIT.burst + LIMIT.per_s * run_s * 0.8  # and the rate is all given


async def test_new_limits_start_with_a_full_bucket(store: KeyStore) -> None:
    """A bucket emptied at one a day is a day ahead per token: new limits (a faster rate) must
    apply at once, not once the old rate has refilled it."""
    slow = RateLimit(per_s=MIN_RATE_PER_S, burst=1000)
    new = await store.create(
        name=f"k-{uuid.uuid4().hex[:8]}", scopes=["jobs:read"], limits=RateLimits(jobs=slow)
    )
    prefix = new.info.prefix
    assert (await store.take_tokens(prefix, RateKind.JOBS, slow, want=1000, need=1)).granted == 1000

    fast = RateLimit(per_s=100.0, burst=100)
    await store.set_limits(prefix, RateLimits(jobs=fast))

    taken = await store.take_tokens(prefix, RateKind.JOBS, fast, want=100, need=100)
    assert (taken.granted, taken.wait_s) == (100, 0.0)
