-- Jobs with limits per key (concurrency_key) or dependencies (depends_on): their enqueue and
-- the settling of dependants once a job they wait for has an outcome (queue_core.gated,
-- queue_core.dependencies). The claim statement that enforces the limits (claim) is in
-- queries.sql. A block starts with "-- name: <name>" and ends at the next one. The parameters
-- of the inserts are named after the columns they fill (:id, :type, ...), each an array of that
-- column's values, as in queries.sql's enqueue_many.

-- name: enqueue_gated
-- enqueue_many for jobs with a concurrency key (:concurrency_key) or dependencies (:waiting_for:
-- how many it waits for), without unique or idempotency keys. Those waiting are not due: nobody
-- is woken.
WITH inserted AS (
    INSERT INTO jobs (id, type, payload, queue, priority, max_attempts, scheduled_at, timeout_s,
                      concurrency_key, waiting_for)
    SELECT id, type, CAST(payload AS jsonb), queue, priority, max_attempts, scheduled_at,
           timeout_s, concurrency_key, waiting_for
    FROM unnest(:id::uuid[], :type::text[], :payload::text[], :queue::text[],
                :priority::smallint[], :max_attempts::int[], :scheduled_at::timestamptz[],
                :timeout_s::float8[], :concurrency_key::text[], :waiting_for::int[])
        AS j(id, type, payload, queue, priority, max_attempts, scheduled_at, timeout_s,
             concurrency_key, waiting_for)
    RETURNING queue, scheduled_at, waiting_for
)
SELECT pg_notify('queue_jobs', due.queue)
FROM (
    SELECT DISTINCT queue FROM inserted
    WHERE waiting_for = 0 AND (scheduled_at IS NULL OR scheduled_at <= now())
) AS due;

-- name: insert_concurrency_keys
-- The keys :key that have no row yet, with their limits (the caller merges a batch's values per
-- key, in key order: rows are inserted in that order). A key that has a row is left to
-- update_concurrency_keys: ON CONFLICT DO UPDATE would lock the row even where nothing changes,
-- and a claim passes over a rated key whose row is locked (claim_keyed), so an enqueue of a
-- busy key in a transaction left open (queue_core.transactional) would keep the key's jobs
-- from starting, and the claim's scan, filled with them, other keys' jobs too.
INSERT INTO concurrency_keys (key, concurrency_limit, rate_per_s, rate_burst)
SELECT key, concurrency_limit, rate_per_s, rate_burst
FROM unnest(:key::text[], :concurrency_limit::int[], :rate_per_s::float8[], :rate_burst::int[])
    AS u(key, concurrency_limit, rate_per_s, rate_burst)
ORDER BY key
ON CONFLICT (key) DO NOTHING;

-- name: update_concurrency_keys
-- The keys :key whose limits these change: their rows locked in key order and rewritten. A
-- limit given replaces the key's; one left out (NULL) keeps it. A row whose limits stay as they
-- were is neither locked nor rewritten: a claim starts none of a rated key's jobs if the key's
-- row changed since its snapshot read it, or is locked (claim_keyed), and enqueueing more jobs
-- of a key must not keep its claims from starting them. A new rate brings tat back to at most one
-- burst ahead at that rate: a bucket emptied at one a day would otherwise keep a key raised to
-- thousands a second waiting for days. A statement of its own, after insert_concurrency_keys:
-- its snapshot has the rows other enqueues inserted meanwhile (the insert waited for them).
WITH changed AS (
    SELECT k.key, u.concurrency_limit, u.rate_per_s, u.rate_burst
    FROM unnest(:key::text[], :concurrency_limit::int[], :rate_per_s::float8[],
                :rate_burst::int[]) AS u(key, concurrency_limit, rate_per_s, rate_burst)
    JOIN concurrency_keys AS k ON k.key = u.key
    WHERE (k.concurrency_limit, k.rate_per_s, k.rate_burst) IS DISTINCT FROM (
        coalesce(u.concurrency_limit, k.concurrency_limit),
        coalesce(u.rate_per_s, k.rate_per_s),
        CASE WHEN u.rate_per_s IS NULL THEN k.rate_burst ELSE u.rate_burst END)
    ORDER BY k.key
    FOR UPDATE OF k
)
UPDATE concurrency_keys AS k
SET concurrency_limit = coalesce(c.concurrency_limit, k.concurrency_limit),
    rate_per_s = coalesce(c.rate_per_s, k.rate_per_s),
    rate_burst = CASE WHEN c.rate_per_s IS NULL THEN k.rate_burst ELSE c.rate_burst END,
    tat = CASE WHEN c.rate_per_s IS NULL OR k.tat IS NULL THEN k.tat
               ELSE least(k.tat, now() + make_interval(
                   secs => c.rate_burst / c.rate_per_s)) END,
    updated_at = now()
FROM changed AS c
WHERE k.key = c.key;

-- name: lock_parents
-- The jobs :parent_ids that new jobs are to depend on, locked in id order and marked as
-- having dependants to settle. Returns those that exist, with their status as of the lock (the
-- latest). The lock is what makes enqueueing a dependant race-free against its parent's
-- outcome: a finish waits for this transaction, then sees dependants_unsettled and has the
-- dependants settled in a later statement, which sees the edges inserted here.
WITH target AS (
    SELECT id FROM jobs WHERE id = ANY(:parent_ids::uuid[]) ORDER BY id FOR UPDATE
)
UPDATE jobs AS j
SET dependants_unsettled = true
FROM target AS t
WHERE j.id = t.id
RETURNING j.id, j.status;

-- name: insert_dependencies
-- The edges "job :job_id[i] depends on job :depends_on[i]", none satisfied yet (settling
-- satisfies those whose parent already completed).
INSERT INTO job_dependencies (job_id, depends_on)
SELECT job_id, depends_on
FROM unnest(:job_id::uuid[], :depends_on::uuid[]) AS e(job_id, depends_on)
ON CONFLICT DO NOTHING;

-- name: settle_lock_timeout
-- Settling, first: the longest this transaction waits for a row lock (:lock_timeout, e.g.
-- '2000ms'), for this transaction only. A caller's transaction that enqueues a dependant of a
-- waiting job holds that job's lock until it ends; settling gives up (lock_not_available)
-- rather than wait that long, and the sweep settles the parent later.
SELECT set_config('lock_timeout', :lock_timeout::text, true);

-- name: lock_settled_parents
-- Settling, step 1: of the jobs :parent_ids, lock (in id order) those that have an outcome
-- and dependants to settle. Returns them with their status.
SELECT id, status
FROM jobs
WHERE id = ANY(:parent_ids::uuid[])
  AND dependants_unsettled
  AND status IN ('completed', 'failed', 'cancelled')
ORDER BY id
FOR UPDATE;

-- name: lock_dependants
-- Settling, step 2: lock (in id order) the dependants of the parents :parent_ids that may
-- change: those with an edge not yet satisfied. The parents are locked already, so no dependant
-- can be added meanwhile; every later step reads a fresh snapshot with all of them locked.
SELECT d.id
FROM jobs AS d
WHERE d.id IN (
    SELECT e.job_id FROM job_dependencies AS e
    WHERE e.depends_on = ANY(:parent_ids::uuid[]) AND NOT e.satisfied
)
ORDER BY d.id
FOR UPDATE;

-- name: satisfy_dependencies
-- Settling, step 3: the parents :parent_ids completed. Each edge is satisfied once (the edge's
-- own update is the guard: settling twice decrements nothing twice), and each dependant's
-- waiting_for goes down by its newly satisfied edges. Whatever the dependant's status (a
-- failed one is recounted from its edges when retried). A pending dependant that waits for
-- nothing more is due now: scheduled_at moves up to now if its time had passed (so waited_s
-- counts from when it became due) and its queue is woken.
WITH marked AS (
    UPDATE job_dependencies AS e
    SET satisfied = true
    WHERE e.depends_on = ANY(:parent_ids::uuid[]) AND NOT e.satisfied
    RETURNING e.job_id
),
released AS (
    UPDATE jobs AS d
    SET waiting_for = greatest(d.waiting_for - m.n, 0),
        scheduled_at = CASE
            WHEN d.waiting_for - m.n <= 0 AND coalesce(d.scheduled_at, d.created_at) < now()
                THEN now()
            ELSE d.scheduled_at
        END,
        updated_at = now()
    FROM (SELECT job_id, count(*)::int AS n FROM marked GROUP BY job_id) AS m
    WHERE d.id = m.job_id
    RETURNING d.queue, d.status, d.waiting_for
)
SELECT pg_notify('queue_jobs', r.queue)
FROM (
    SELECT DISTINCT queue FROM released WHERE status = 'pending' AND waiting_for = 0
) AS r;

-- name: fail_dependants
-- Settling, step 4: the parents :parent_ids failed for good or were cancelled. Their pending
-- dependants end the same way (cancelled if the parent was, else failed), with a reason naming
-- it; one that waits for several such parents names the first by id. Returns the dependants
-- ended, whose own dependants the caller settles next (transitively, one level a statement).
WITH hit AS (
    SELECT DISTINCT ON (e.job_id) e.job_id, p.id AS parent, p.status AS parent_status
    FROM jobs AS p
    JOIN job_dependencies AS e ON e.depends_on = p.id
    WHERE p.id = ANY(:parent_ids::uuid[]) AND p.status IN ('failed', 'cancelled')
      AND NOT e.satisfied
    ORDER BY e.job_id, p.id
)
UPDATE jobs AS d
SET status = CASE WHEN h.parent_status = 'cancelled' THEN 'cancelled' ELSE 'failed' END,
    error_message = CASE
        WHEN h.parent_status = 'cancelled' THEN format('dependency %s was cancelled', h.parent)
        ELSE format('dependency %s failed', h.parent)
    END,
    finished_at = now(),
    updated_at = now()
FROM hit AS h
WHERE d.id = h.job_id AND d.status = 'pending'
RETURNING d.id, d.dependants_unsettled;

-- name: mark_settled
-- Settling, last step: the parents :parent_ids have no dependants left to tell.
UPDATE jobs SET dependants_unsettled = false WHERE id = ANY(:parent_ids::uuid[]);

-- name: unsettled_parents
-- The sweep: up to :limit jobs with an outcome whose dependants were never settled (the
-- process that recorded the outcome died before settling them), older than :min_age_s seconds
-- so as not to race the settling under way (which would be harmless, only wasted). Served by
-- ix_jobs_dependants_unsettled, which holds only such jobs.
SELECT id
FROM jobs
WHERE dependants_unsettled
  AND status IN ('completed', 'failed', 'cancelled')
  AND updated_at < now() - make_interval(secs => :min_age_s::float8)
LIMIT :limit;

-- name: queues_of_jobs
-- The queue of each of the jobs :job_ids that exists: what the API checks a key restricted to
-- some queues against before it lets a job depend on them (a dependency shows its status).
SELECT id, queue
FROM jobs
WHERE id = ANY (:job_ids::uuid[]);

-- name: job_dependencies
-- What job :job_id depends on: each parent's id, its status (NULL: deleted since) and whether
-- it completed for this job, in id order.
SELECT e.depends_on AS id, p.status, e.satisfied
FROM job_dependencies AS e
LEFT JOIN jobs AS p ON p.id = e.depends_on
WHERE e.job_id = :job_id
ORDER BY e.depends_on;

-- name: fail_orphaned_dependants
-- The repair sweep: up to :limit pending dependants that wait for a dependency which no
-- longer exists fail, with a reason naming it. Settling never deletes a parent, and neither
-- retention nor DELETE /v1/jobs/{id} deletes one whose dependants are still to be told; but a
-- parent deleted by hand (or by the retention of a build before 2026-12-05) left its pending
-- dependants waiting for ever. An edge is made only to a job that exists, in the dependant's
-- own transaction, so a missing parent never comes back. Walks the waiting jobs
-- (ix_jobs_waiting), a probe of the edges and of the parent's primary key each: the rescuer
-- runs it every ORPHAN_SWEEP_INTERVAL_S, not every pass. SKIP LOCKED: a dependant being
-- settled is left to the next sweep. Returns the jobs failed, whose own dependants the caller
-- settles.
WITH orphaned AS (
    SELECT DISTINCT ON (e.job_id) e.job_id, e.depends_on
    FROM jobs AS d
    JOIN job_dependencies AS e ON e.job_id = d.id AND NOT e.satisfied
    WHERE d.status = 'pending'
      AND d.waiting_for > 0
      AND NOT EXISTS (SELECT FROM jobs AS p WHERE p.id = e.depends_on)
    ORDER BY e.job_id, e.depends_on
    LIMIT :limit
),
locked AS (
    SELECT d.id
    FROM jobs AS d
    WHERE d.id IN (SELECT job_id FROM orphaned) AND d.status = 'pending'
    ORDER BY d.id
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs AS d
SET status = 'failed',
    error_message = format('dependency %s no longer exists', o.depends_on),
    finished_at = now(),
    updated_at = now()
FROM orphaned AS o
WHERE d.id = o.job_id AND d.id IN (SELECT id FROM locked) AND d.status = 'pending'
RETURNING d.id, d.dependants_unsettled, o.depends_on AS missing;

-- name: release_miscounted_dependants
-- The repair sweep's other half: up to :limit pending jobs that wait (waiting_for > 0) with no
-- edge left unsatisfied, and so nothing that would ever count them down. Enqueueing, settling
-- and retrying each change the count and the edges in one statement or transaction, so only a
-- hand edit leaves such a job (waiting_for raised, or an edge deleted); without this it would
-- wait for ever. The count is what the edges say, 0: the job is due now, as one whose last
-- dependency completed (satisfy_dependencies), and its queue is woken. SKIP LOCKED: a job being
-- changed is left to the next sweep (its row is re-checked once locked). Walks the waiting jobs
-- (ix_jobs_waiting) and probes their edges, like fail_orphaned_dependants. Only jobs unchanged
-- for :min_age_s seconds: an enqueue whose statements commit one by one (a SQLAlchemy engine in
-- AUTOCOMMIT the transactional enqueue did not see as such) commits a dependant before its
-- edges, and may wait for a parent's lock in between. Returns the jobs released with the count
-- they had.
WITH stuck AS (
    SELECT d.id, d.waiting_for
    FROM jobs AS d
    WHERE d.status = 'pending'
      AND d.waiting_for > 0
      AND d.updated_at < now() - make_interval(secs => :min_age_s::float8)
      AND NOT EXISTS (
          SELECT FROM job_dependencies AS e WHERE e.job_id = d.id AND NOT e.satisfied)
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
),
released AS (
    UPDATE jobs AS d
    SET waiting_for = 0,
        scheduled_at = CASE
            WHEN coalesce(d.scheduled_at, d.created_at) < now() THEN now()
            ELSE d.scheduled_at
        END,
        updated_at = now()
    FROM stuck AS s
    WHERE d.id = s.id
    RETURNING d.id, d.queue, s.waiting_for AS was_waiting_for
)
-- A notification a job: PostgreSQL folds the same one sent twice in a transaction.
SELECT r.id, r.was_waiting_for, pg_notify('queue_jobs', r.queue)
FROM released AS r;
