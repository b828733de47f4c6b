"""Limits per key in the claim: concurrency and rate across claimers, and every path that moves
a keyed job out of running giving its slot back (finish, release, rescue)."""

import asyncio
import math
import re
import uuid

import asyncpg
import pytest
from structlog.testing import capture_logs

from helpers import RecordedQueueEvents
from queue_core import queue as queue_module
from queue_core.db import create_pool
from queue_core.errors import InvalidJobError
from queue_core.jobs import NewJob, Outcome, OutcomeKind
from queue_core.limits import MIN_RATE_PER_S
from queue_core.queue import Queue
from queue_core.sql import QUERIES
from queue_core.transactional import enqueue_in

DEFAULT = ("default",)


def _job(key: str | None = None, **limits: float) -> NewJob:
    return NewJob(type="noop", payload={}, concurrency_key=key, **limits)  # type: ignore[arg-type]


async def _claim(queue: Queue, limit: int = 100, worker: str = "w1") -> list[uuid.UUID]:
    jobs = await queue.claim(worker_id=worker, queues=DEFAULT, limit=limit, lease_s=30)
    return [j.id for j in jobs]


async def _running(pool: asyncpg.Pool, key: str) -> int:
    sql = "SELECT count(*) FROM jobs WHERE status = 'running' AND concurrency_key = $1"
    count: int = await pool.fetchval(sql, key)
    return count


async def test_a_key_runs_at_most_its_limit_and_waiting_jobs_keep_their_attempts(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    ids = await queue.enqueue_many([_job("k", concurrency_limit=2) for _ in range(5)])

    first = await _claim(queue)
    assert len(first) == 2
    assert await _claim(queue) == []
    assert await _running(pool, "k") == 2
    waiting = set(ids) - set(first)
    for job_id in waiting:
        assert (await queue.get(job_id)).attempts == 0

    await queue.complete(worker_id="w1", job_ids=first[:1])
    assert await _running(pool, "k") == 1
    assert len(await _claim(queue)) == 1
    assert await _claim(queue) == []


async def test_a_full_key_does_not_hold_back_other_keys_or_plain_jobs(queue: Queue) -> None:
    full = await queue.enqueue_many([_job("busy", concurrency_limit=1) for _ in range(20)])
    others = await queue.enqueue_many([_job(f"other-{i}", concurrency_limit=1) for i in range(5)])
    plain = await queue.enqueue_many([_job() for _ in range(5)])

    claimed = set(await _claim(queue, limit=50))

    assert len(claimed & set(full)) == 1
    assert set(others) <= claimed
    assert set(plain) <= claimed


async def test_the_latest_enqueue_sets_the_limit_and_leaving_it_out_keeps_it(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    await queue.enqueue_many([_job("k", concurrency_limit=1) for _ in range(4)])
    await queue.enqueue(_job("k", concurrency_limit=3))
    await queue.enqueue(_job("k"))  # no limit given: the key keeps 3

    assert await pool.fetchval("SELECT concurrency_limit FROM concurrency_keys") == 3
    assert len(await _claim(queue)) == 3


async def test_concurrent_claimers_never_exceed_the_limit(queue: Queue, pool: asyncpg.Pool) -> None:
    await queue.enqueue_many([_job("k", concurrency_limit=3) for _ in range(60)])

    for _ in range(5):
        claims = await asyncio.gather(*(_claim(queue, 5, f"w{i}") for i in range(8)))
        claimed = [job_id for ids in claims for job_id in ids]
        running = await pool.fetchval("SELECT count(*) FROM jobs WHERE status = 'running'")
        assert running == len(claimed) <= 3
        assert await _running(pool, "k") == running
        for worker, ids in enumerate(claims):
            await queue.complete(worker_id=f"w{worker}", job_ids=ids)
        assert await _running(pool, "k") == 0


async def test_release_and_rescue_give_the_slot_back(queue: Queue, pool: asyncpg.Pool) -> None:
    await queue.enqueue_many([_job("k", concurrency_limit=1) for _ in range(3)])

    [first] = await _claim(queue)
    await queue.finish(worker_id="w1", outcomes=[Outcome(first, OutcomeKind.RELEASED)])
    assert await _running(pool, "k") == 0

    [second] = await _claim(queue)
    expire = "UPDATE jobs SET lease_expires_at = now() - interval '1 s' WHERE id = $1"
    await pool.execute(expire, second)
    rescued = await queue.rescue_expired()
    assert [r.job_id for r in rescued] == [second]
    assert await _running(pool, "k") == 0
    assert len(await _claim(queue)) == 1


async def test_a_failed_attempt_gives_the_slot_back_and_the_retry_waits_its_turn(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    await queue.enqueue_many([_job("k", concurrency_limit=1) for _ in range(2)])
    [first] = await _claim(queue)
    await queue.finish(
        worker_id="w1", outcomes=[Outcome(first, OutcomeKind.FAILED, "boom", retry_in_s=0)]
    )
    assert await _running(pool, "k") == 0
    assert len(await _claim(queue)) == 1
    assert await _claim(queue) == []


async def test_rate_limit_admits_a_burst_then_one_per_interval(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    await queue.enqueue_many([_job("r", rate_limit=2.0, rate_burst=3) for _ in range(10)])

    assert len(await _claim(queue)) == 3  # the burst
    assert await _claim(queue) == []  # no token left
    # Half a second later (moved back instead of waited for): one token, at 2 a second.
    await pool.execute("UPDATE concurrency_keys SET tat = tat - interval '0.5 s'")
    assert len(await _claim(queue)) == 1
    assert await _claim(queue) == []


async def test_a_rate_below_one_a_day_is_refused(queue: Queue) -> None:
    # Near 0, one start moved the key's instant past a timestamp's range: every claim of the
    # queue failed, plain jobs' too.
    with pytest.raises(InvalidJobError):
        await queue.enqueue(_job("crawl", rate_limit=1e-300))
    await queue.enqueue(_job("crawl", rate_limit=MIN_RATE_PER_S))
    assert len(await _claim(queue)) == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rate_limit", math.nan),
        ("rate_limit", math.inf),
        ("rate_limit", 0.0),
        ("concurrency_limit", 0),
        ("concurrency_limit", 10**6),
        ("rate_burst", 0),
    ],
)
async def test_a_limit_out_of_bounds_is_refused_by_name_before_any_statement(
    db_url: str, field: str, value: float
) -> None:
    """A NaN or infinite rate raised a bare ValueError or OverflowError from the middle of
    the enqueue; the other values failed a statement, aborting the caller's transaction."""
    limits = {field: value} if field != "rate_burst" else {"rate_limit": 1.0, field: value}
    conn = await asyncpg.connect(db_url)
    try:
        async with conn.transaction():
            with pytest.raises(InvalidJobError, match=field):
                await enqueue_in(conn, _job("crawl", **limits))
            await enqueue_in(conn, _job("crawl"))  # the transaction goes on
        assert await conn.fetchval("SELECT count(*) FROM jobs") == 1
    finally:
        await conn.close()


async def test_a_rate_raised_after_a_slow_one_applies_at_once(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    await queue.enqueue_many([_job("crawl", rate_limit=MIN_RATE_PER_S, rate_burst=100)])
    await queue.enqueue_many([_job("crawl") for _ in range(99)])
    assert len(await _claim(queue)) == 100  # the burst: the bucket is empty for 100 days
    await queue.enqueue_many([_job("crawl", rate_limit=1000.0, rate_burst=5) for _ in range(10)])
    # At most one burst's time at the new rate (5 ms) to wait, not 100 days: moved on by
    # those 5 ms instead of waited for, the bucket holds the whole burst.
    await pool.execute("UPDATE concurrency_keys SET tat = tat - interval '5 ms'")
    assert len(await _claim(queue)) == 5


async def test_a_key_row_with_its_instant_centuries_ahead_fails_no_claim(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    """However a key's row came to be (written by hand, by an older version), the claim must
    go on for everything else: here its count of starts would overflow an integer. (The
    infinities are refused: ck_concurrency_keys_tat_in_range.)"""
    await queue.enqueue_many([_job("odd", rate_limit=10_000.0), _job(None)])
    await pool.execute("UPDATE concurrency_keys SET tat = '2199-12-31T23:59:59Z'")
    assert len(await _claim(queue)) == 1  # the plain job; the keyed one waits its turn


async def test_a_key_row_with_a_rate_but_no_burst_limits_nothing(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    # Only a row written by hand has one (every enqueue sets a burst with its rate).
    await queue.enqueue_many([_job("odd", rate_limit=1.0) for _ in range(3)])
    # Its instant at the end of the range: moved on by the starts, it would leave the range
    # and fail the claim (ck_concurrency_keys_tat_in_range).
    await pool.execute(
        "UPDATE concurrency_keys SET rate_burst = NULL, rate_per_s = $1,"
        " tat = '2199-12-31T23:59:59Z'",
        MIN_RATE_PER_S,
    )
    assert len(await _claim(queue)) == 3


async def test_rate_and_concurrency_limits_hold_together(queue: Queue) -> None:
    await queue.enqueue_many(
        [_job("both", concurrency_limit=1, rate_limit=100.0) for _ in range(5)]
    )
    assert len(await _claim(queue)) == 1


async def test_a_full_keys_backlog_ahead_does_not_starve_the_keys_behind_it(
    queue: Queue,
) -> None:
    await queue.enqueue_many([_job("busy", concurrency_limit=1) for _ in range(30)])
    assert len(await _claim(queue, limit=5)) == 1  # busy is full now
    behind = await queue.enqueue_many([_job(f"free-{i}", concurrency_limit=1) for i in range(3)])

    assert set(await _claim(queue, limit=5)) == set(behind)


async def test_a_rated_key_whose_row_is_held_is_skipped_not_waited_for(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    # A claim moves a rated key's tat on, so it locks the key's row, SKIP LOCKED: it holds
    # every other keyed claim's turn, and must not wait for an enqueue changing the key.
    held = await queue.enqueue_many([_job("held", rate_limit=100.0) for _ in range(3)])
    free = await queue.enqueue_many([_job("free", rate_limit=100.0) for _ in range(3)])
    limited = await queue.enqueue_many([_job("limited", concurrency_limit=5) for _ in range(3)])

    async with pool.acquire() as other, other.transaction():
        # What an enqueue changing the key's limits does to its row, uncommitted yet. A key
        # with no rate has no row written by a claim: its row's lock holds nothing back.
        await other.execute(
            "UPDATE concurrency_keys SET updated_at = now() WHERE key IN ('held', 'limited')"
        )
        claimed = set(await asyncio.wait_for(_claim(queue), timeout=5))
    assert claimed == set(free) | set(limited)
    assert set(await _claim(queue)) == set(held)


async def test_keyed_claims_take_turns_and_a_turn_ends_at_commit(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    ids = await queue.enqueue_many([_job("k", concurrency_limit=2) for _ in range(3)])

    async with pool.acquire() as other:
        async with other.transaction():
            await other.execute(
                QUERIES["lock_keyed_claims"].text
            )  # another claim's turn, under way
            waiting = asyncio.create_task(_claim(queue))
            await asyncio.sleep(0.5)
            assert not waiting.done()
        assert len(set(await asyncio.wait_for(waiting, timeout=5)) & set(ids)) == 2


async def test_a_claim_kept_from_its_turn_takes_plain_jobs_alone_and_says_so(
    queue: Queue,
    queue_events: RecordedQueueEvents,
    pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(queue_module, "KEYED_TURN_WAIT_S", 0.3)
    await queue.enqueue_many([_job("k", concurrency_limit=2) for _ in range(3)])
    plain = await queue.enqueue_many([_job() for _ in range(2)])

    async with pool.acquire() as other, other.transaction():
        await other.execute(QUERIES["lock_keyed_claims"].text)  # a holder that stalled
        with capture_logs() as logs:
            claimed = await asyncio.wait_for(_claim(queue), timeout=5)
    assert set(claimed) == set(plain)
    assert [e["event"] for e in logs] == ["keyed_claim_turn_timed_out"]
    assert queue_events.keyed_turn_timeouts == 1  # the worker's metric counts it
    assert await _running(pool, "k") == 0
    assert len(await _claim(queue)) == 2  # the next claim gets its turn
    assert queue_events.keyed_turn_timeouts == 1


async def test_a_claim_that_waited_for_its_turn_gets_its_whole_lease(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    # The lease and started_at count from when the claim had its turn, not from when the
    # worker sent it: a claim that waited behind a slow turn must not get a lease short by
    # that wait (rescued early, run twice).
    await queue.enqueue(_job("k", concurrency_limit=2))
    async with pool.acquire() as other:
        async with other.transaction():
            await other.execute(QUERIES["lock_keyed_claims"].text)  # a slow turn ahead
            waiting = asyncio.create_task(
                queue.claim(worker_id="w1", queues=DEFAULT, limit=10, lease_s=30)
            )
            await asyncio.sleep(1.0)
        [job] = await asyncio.wait_for(waiting, timeout=5)
    row = await pool.fetchrow(
        "SELECT extract(epoch FROM lease_expires_at - clock_timestamp())::float8 AS left_s, "
        "extract(epoch FROM lease_expires_at - started_at)::float8 AS lease_s FROM jobs "
        "WHERE id = $1",
        job.id,
    )
    assert row is not None
    assert row["lease_s"] == pytest.approx(30)
    assert row["left_s"] > 29.5, row  # counted from the turn: not short by the second waited


async def test_enqueueing_more_of_a_key_leaves_its_row_unless_a_limit_changes(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    # A claim starts none of a key's jobs if the key's row changed after its snapshot read
    # it, so an enqueue that changes nothing must leave the row (the same version) alone.
    version = "SELECT ctid::text FROM concurrency_keys WHERE key = 'k'"
    await queue.enqueue(_job("k", concurrency_limit=2))
    before = await pool.fetchval(version)

    await queue.enqueue_many([_job("k", concurrency_limit=2), _job("k")])
    assert await pool.fetchval(version) == before

    await queue.enqueue(_job("k", concurrency_limit=3))
    assert await pool.fetchval(version) != before
    assert len(await _claim(queue)) == 3


async def test_a_claim_reads_its_own_keys_rows_not_every_key_there_is(
    queue: Queue, pool: asyncpg.Pool
) -> None:
    # Keys are kept once made, so the table grows with every key ever used: a claim must look
    # up the few keys it starts jobs of (a join read all 100,000 keys, 27 ms a claim of 500).
    await pool.execute(
        "INSERT INTO concurrency_keys (key, concurrency_limit) "
        "SELECT 'idle-' || i, 1 FROM generate_series(1, 30000) AS i"
    )
    await queue.enqueue_many([_job(f"k{i}", concurrency_limit=1) for i in range(300)])
    await pool.execute("ANALYZE concurrency_keys")
    await pool.execute("ANALYZE jobs")
    key_pages: int = await pool.fetchval(
        "SELECT relpages FROM pg_class WHERE oid = 'concurrency_keys'::regclass"
    )
    assert key_pages > 100, "the keys must be many enough for the planner to weigh a scan"

    # The claim as queue_claim_keyed runs it: its statement, read from the database, planned
    # as the function plans it (generic, its variables as parameters).
    source: str = await pool.fetchval(
        "SELECT prosrc FROM pg_proc WHERE proname = 'queue_claim_keyed'"
    )
    statement = source[source.index("RETURN QUERY") + len("RETURN QUERY") : source.rindex(";")]
    variables = [
        ("p_queues", "text[]"),
        ("p_limit", "int"),
        ("p_worker_id", "text"),
        ("p_lease_s", "float8"),
        ("v_now", "timestamptz"),
    ]
    for n, (variable, type_) in enumerate(variables, start=1):
        statement = re.sub(rf"\b{variable}\b", f"${n}::{type_}", statement)
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            # A statement prepared on the server and run by EXECUTE goes through the plan
            # cache, as the function's does. (EXPLAIN of the statement itself, its values
            # bound by the driver, folds them in as constants: a custom plan, whatever
            # plan_cache_mode says.)
            types = ", ".join(type_ for _, type_ in variables)
            await conn.execute(f"PREPARE claim_keyed_plan ({types}) AS {statement}")
            await conn.execute(
                "SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL jit = off"
            )
            rows = await conn.fetch(
                "EXPLAIN (ANALYZE, BUFFERS, VERBOSE, COSTS OFF) "
                "EXECUTE claim_keyed_plan('{default}', 500, 'w1', 30, clock_timestamp())"
            )
        finally:
            await transaction.rollback()  # leaves the jobs pending
            await conn.execute("DEALLOCATE claim_keyed_plan")
    plan = "\n".join(r[0] for r in rows)
    assert "unnest($1)" in plan, plan  # the generic plan, its values parameters
    assert "rows=300" in plan.splitlines()[0], plan  # it did start every job
    assert "Seq Scan on concurrency_keys" not in plan, plan


async def test_an_enqueue_left_open_holds_back_no_claim_unless_it_changes_a_rate(
    queue: Queue, pool: asyncpg.Pool, db_url: str
) -> None:
    # A caller's transaction that enqueued a job of a busy key and is still open: the key's
    # row must not be locked, or claims pass over the key, and its jobs at the head of the
    # scan fill the claim, other keys' jobs left behind.
    busy = await queue.enqueue_many([_job("busy", concurrency_limit=50) for _ in range(30)])
    rated = await queue.enqueue_many([_job("rated", rate_limit=1000.0) for _ in range(5)])
    others = await queue.enqueue_many([_job(f"other-{i}", concurrency_limit=1) for i in range(5)])

    caller = await asyncpg.connect(db_url)  # an application's own connection
    try:
        async with caller.transaction():
            await enqueue_in(caller, _job("busy"))  # the key keeps its limit
            await enqueue_in(caller, _job("busy", concurrency_limit=50))  # the same again
            claimed = await asyncio.wait_for(_claim(queue, limit=10), timeout=5)
            assert set(claimed) <= set(busy)
            assert await _running(pool, "busy") == 10

        async with caller.transaction():
            await enqueue_in(caller, _job("busy", concurrency_limit=12))
            await enqueue_in(caller, _job("rated", rate_limit=500.0))
            started = set(await asyncio.wait_for(_claim(queue, limit=100), timeout=5))
            # A new limit: claims go on by the limit their snapshot has until the caller
            # commits (they count no row version but a rated key's).
            assert len(started & set(busy)) == 20
            assert set(others) <= started
            # A new rate rewrites the row that a claim moves the key's tat on in: the key
            # waits until the caller commits.
            assert not started & set(rated)
    finally:
        await caller.close()
    limit = "SELECT concurrency_limit FROM concurrency_keys WHERE key = 'busy'"
    assert await pool.fetchval(limit) == 12
    assert set(await _claim(queue, limit=10)) >= set(rated)


async def test_a_database_defaulting_to_repeatable_read_still_keeps_a_key_to_its_limit(
    queue: Queue, pool: asyncpg.Pool, db_url: str
) -> None:
    # The claim counts a key's running jobs in a snapshot taken once it has its turn: only
    # under READ COMMITTED, where each statement takes its own. A database or role whose
    # default is REPEATABLE READ would give the claim its statement's first snapshot, taken
    # before the turn, missing the starts of the turn before it.
    await pool.execute(
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_isolation"
        " = ''repeatable read''', current_database()); END $$"
    )
    other = await queue.enqueue(
        NewJob(type="noop", payload={}, queue="other", concurrency_key="k", concurrency_limit=1)
    )
    await queue.enqueue(_job("k", concurrency_limit=1))
    claimers = await create_pool(db_url)  # connections made after the default changed
    try:
        assert await claimers.fetchval("SHOW transaction_isolation") == "read committed"
        async with pool.acquire() as holder, holder.transaction():
            await holder.execute(QUERIES["lock_keyed_claims"].text)  # the turn before
            waiting = asyncio.create_task(_claim(Queue(claimers)))
            await asyncio.sleep(0.5)
            assert not waiting.done()
            await holder.execute(  # that turn starts the key's job in another queue
                "UPDATE jobs SET status = 'running', attempts = 1, lease_owner = 'w0',"
                " lease_expires_at = now() + interval '1 minute', started_at = now()"
                " WHERE id = $1",
                other,
            )
        assert await asyncio.wait_for(waiting, timeout=5) == []
    finally:
        await claimers.close()
    assert await _running(pool, "k") == 1
