"""Keyed claims in one round trip: ``queue_claim_keyed``, a function that takes the keyed
claims' turn and then claims.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07

A keyed claim must take its statement's snapshot once it holds the keyed claims' turn
(``lock_keyed_claims``), so the turn and the claim were two statements of one transaction:
BEGIN with the turn, the claim, COMMIT. That is three round trips from a busy worker, each
queued behind its running jobs' tasks, and a claim is on the worker's critical path. A function
takes one: each statement of a VOLATILE function takes a new snapshot (READ COMMITTED), so the
claim inside it, run after the lock, sees every start that any earlier turn committed; and the
lock is let go when the caller's statement commits. PL/pgSQL keeps the claim's plan for the
session, planned generically (the SET clauses), as the transaction's SET LOCAL did.

Workers of the build before use the same lock and the same statement in their transaction,
so both kinds take turns together during a rolling deploy. The statement is the one
``sql/queries.sql`` had as ``claim_keyed``, with its comments, which say why it is written so:
a later change to it is a new revision that replaces the function. The function runs with the
caller's rights (the worker role's grants), and raises lock_not_available when the turn does
not come within ``p_turn_wait_ms``.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CREATE = """
CREATE FUNCTION queue_claim_keyed(
    p_queues text[], p_limit integer, p_worker_id text, p_lease_s double precision,
    p_turn_wait_ms integer
)
RETURNS TABLE (
    id uuid, type varchar, payload jsonb, queue varchar, priority smallint, attempts integer,
    max_attempts integer, timeout_s double precision, waited_s double precision
)
LANGUAGE plpgsql VOLATILE
-- The claim's plan is made once per session, generic: a custom plan per call costs a good
-- part of the run (0.7 of 13 ms, a claim of 500), and with a generic plan, costed for any
-- LIMIT (past jit_above_cost), a server with JIT would compile it on every call (90 ms for a
-- statement that runs in 10).
SET plan_cache_mode = force_generic_plan
SET jit = off
-- Set to p_turn_wait_ms below; the clause keeps that change inside the function.
SET lock_timeout = 0
AS $claim$
#variable_conflict use_column
DECLARE
    -- The instant of the claim: once the turn is had. now() is when the caller's statement
    -- began, before the wait for the turn (up to p_turn_wait_ms): leases counted from it would
    -- be short by that wait, and started_at and waited_s early.
    v_now timestamptz;
BEGIN
    PERFORM set_config('lock_timeout', p_turn_wait_ms || 'ms', true);
    -- The turn: lock_keyed_claims (sql/queries.sql), held until the caller's statement commits.
    PERFORM pg_advisory_xact_lock(1902863737);
    v_now := clock_timestamp();
    -- The claim: plain and keyed jobs together, highest priority and oldest first, each
    -- key's within its limits, in one statement. What claim (sql/queries.sql) says of its
    -- scan, locks, attempts and waited_s holds here too; plain is claim's scan, and keyed the
    -- same over ix_jobs_claimable_keyed with the key's conditions (two partial indexes, so that
    -- claim never walks past keyed jobs).
    -- Its snapshot is taken now, once the turn is had (a new one for each statement of a
    -- VOLATILE function, under READ COMMITTED), and each turn commits before the next one
    -- begins. So it holds every start any claim made, and a key's running jobs counted from it
    -- are all there are (finishes since only make the count high): the count is race-free with
    -- no write to the key's row. Nothing is counted but the running jobs, so the statements
    -- that move a job out of running (finish, rescue_expired) change no key row. Taking turns
    -- costs little: a claim is one statement of milliseconds, and plain jobs alone never come
    -- here.
    --  * keyed: each candidate with how many of its key's jobs may start: limit - running
    --    (ix_jobs_running_keyed, by lease: see migration 0013) and, for a key with a rate, the
    --    tokens of the generic cell rate algorithm as in keys.sql (tat moves on 1/rate a
    --    start; the bucket holds rate_burst). The scan walks past the jobs of keys with none
    --    to start, which cost no lock and no attempt. A lateral lookup per candidate on
    --    purpose (a key lookup and a count of a few index entries), where a join would let the
    --    planner count every key there is.
    --  * held: the rows of the candidates' keys with a rate, whose tat this claim moves on,
    --    locked SKIP LOCKED: an enqueue that changes a key's limits holds its row until it
    --    commits, and a claim, which holds every other claim's turn, must not wait for it.
    --  * due: each key's candidates up to its starts, by priority, with the plain ones; of a
    --    key with a rate, only if its locked row is the very version the snapshot read (its
    --    tat and rate as counted); one changed since is left to the next claim. Rows locked
    --    but cut here stay pending, as in claim.
    --  * started: a rated key's tat moved on by its starts, by the version this statement
    --    holds.
    RETURN QUERY
    WITH plain AS MATERIALIZED (
        SELECT c.id, c.priority, c.due_at
        FROM unnest(p_queues) AS q(name)
        CROSS JOIN LATERAL (
            SELECT j.id, j.priority, coalesce(j.scheduled_at, j.created_at) AS due_at
            FROM jobs AS j
            WHERE j.status = 'pending'
              AND j.concurrency_key IS NULL
              AND j.waiting_for = 0
              AND j.queue = q.name
              AND coalesce(j.scheduled_at, j.created_at) <= v_now
            ORDER BY j.priority DESC, coalesce(j.scheduled_at, j.created_at)
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        ) AS c
    ),
    keyed AS MATERIALIZED (
        SELECT c.id, c.concurrency_key, c.priority, c.due_at, c.rated, c.version, c.starts
        FROM unnest(p_queues) AS q(name)
        CROSS JOIN LATERAL (
            SELECT j.id, j.concurrency_key, j.priority,
                   coalesce(j.scheduled_at, j.created_at) AS due_at, k.rated, k.version, k.starts
            FROM jobs AS j
            CROSS JOIN LATERAL (
                SELECT f.ctid AS version,
                       -- Only a rate with a burst limits starts and moves tat on. (A rate without
                       -- a burst, which only a row written by hand can have, limits nothing.)
                       f.rate_per_s IS NOT NULL AND f.rate_burst IS NOT NULL AS rated,
                       least(
                           -- By lease, not by status: see migration 0013.
                           coalesce(f.concurrency_limit - (
                               SELECT count(*)::int FROM jobs AS r
                               WHERE r.lease_owner IS NOT NULL AND r.concurrency_key = f.key),
                               p_limit),
                           -- Within [0, burst] before the cast: a tat far ahead (a slow rate
                           -- since raised) must not overflow the integer. (Not coalesce: the
                           -- greatest() of a NULL is 0.)
                           CASE WHEN f.rate_per_s IS NULL OR f.rate_burst IS NULL THEN p_limit
                                ELSE floor(greatest(f.rate_burst - f.rate_per_s * greatest(
                                    extract(epoch FROM f.tat - v_now), 0), 0))::int END
                       ) AS starts
                FROM concurrency_keys AS f
                WHERE f.key = j.concurrency_key
                -- Not pulled up into the scan's query, where each mention of starts would
                -- count the key's running jobs again.
                OFFSET 0
            ) AS k
            WHERE j.status = 'pending'
              AND j.concurrency_key IS NOT NULL
              AND j.waiting_for = 0
              AND j.queue = q.name
              AND coalesce(j.scheduled_at, j.created_at) <= v_now
              AND k.starts > 0
            ORDER BY j.priority DESC, coalesce(j.scheduled_at, j.created_at)
            LIMIT p_limit
            FOR UPDATE OF j SKIP LOCKED
        ) AS c
    ),
    held AS MATERIALIZED (
        -- One probe of the primary key per key (the LATERAL). A join reads every key there is
        -- (a sequential scan and a hash: 27 ms a claim of 500 once the table held 100,000 keys),
        -- and "key = ANY (ARRAY(...))" compares each key with every element of that array.
        SELECT h.key, h.version
        FROM (SELECT DISTINCT concurrency_key FROM keyed WHERE rated) AS c
        CROSS JOIN LATERAL (
            SELECT k.key, k.ctid AS version
            FROM concurrency_keys AS k
            WHERE k.key = c.concurrency_key
            FOR UPDATE SKIP LOCKED
        ) AS h
    ),
    due AS MATERIALIZED (
        SELECT id, concurrency_key, version, rated FROM (
            SELECT id, NULL::text AS concurrency_key, NULL::tid AS version, false AS rated,
                   priority, due_at
            FROM plain
            UNION ALL
            SELECT c.id, c.concurrency_key, c.version, c.rated, c.priority, c.due_at
            FROM (
                SELECT id, concurrency_key, version, rated, starts, priority, due_at,
                       row_number() OVER (PARTITION BY concurrency_key
                                          ORDER BY priority DESC, due_at) AS nth
                FROM keyed
            ) AS c
            WHERE c.nth <= c.starts
              AND (NOT c.rated OR EXISTS (
                  SELECT FROM held AS h WHERE h.key = c.concurrency_key AND h.version = c.version))
        ) AS both_kinds
        ORDER BY priority DESC, due_at
        LIMIT p_limit
    ),
    started AS (
        UPDATE concurrency_keys AS k
        -- A start needs a token, so tat stays within a burst of now (27 years at the slowest
        -- rate), inside ck_concurrency_keys_tat_in_range. One moved on from any instant could
        -- leave it.
        SET tat = greatest(k.tat, v_now) + make_interval(secs => s.n / k.rate_per_s),
            updated_at = v_now
        FROM (
            SELECT concurrency_key AS key, version, count(*)::int AS n
            FROM due
            WHERE rated
            GROUP BY concurrency_key, version
        ) AS s
        WHERE k.ctid = s.version AND k.key = s.key
    )
    UPDATE jobs AS j
    SET status = 'running',
        attempts = j.attempts + 1,
        lease_owner = p_worker_id,
        lease_expires_at = v_now + make_interval(secs => p_lease_s),
        started_at = v_now,
        finished_at = NULL,
        updated_at = v_now
    WHERE j.id = ANY (ARRAY(SELECT id FROM due))
    RETURNING j.id, j.type, j.payload, j.queue, j.priority, j.attempts, j.max_attempts,
              j.timeout_s,
              extract(epoch FROM v_now - coalesce(j.scheduled_at, j.created_at))::float8
                  AS waited_s;
END
$claim$
"""


def upgrade() -> None:
    op.execute(CREATE)


def downgrade() -> None:
    op.execute("DROP FUNCTION queue_claim_keyed(text[], integer, text, double precision, integer)")
