-- The queue's semantics, one named statement each. queue_core.queue.Queue is the only caller,
-- and the only code that changes a job's status. Each statement is prepared once per
-- connection by asyncpg. A block starts with "-- name: <name>" and ends at the next one.
-- Parameters are named (:worker_id), compiled to $n at load (sql/__init__.py). Those of the
-- inserts of jobs are named after the columns they fill (:id, :type, ...): in enqueue_many
-- each is an array of that column's values, in enqueue_one the value itself, so one mapping of
-- column to values serves both (queue_core.keyed.job_columns).

-- name: enqueue_many
-- Insert jobs in one statement (all or nothing) from parallel arrays, and wake the workers of
-- each queue that got due work with one NOTIFY per queue, never one per row. The NOTIFY rides
-- in the same transaction as the insert: a worker is never woken for a row it cannot see yet,
-- and one that misses the wake-up finds the job at its next poll. (At commit a NOTIFY takes a
-- global lock, so commits that notify are serialised: single enqueues are group-committed
-- into this statement by Queue.enqueue for that reason.)
-- Payloads come as JSON text (:payload), cast here: the statement then runs on any asyncpg
-- connection, whatever json codec it has (ours, asyncpg's default, SQLAlchemy's), which is
-- what lets queue_core.transactional enqueue on a caller's connection with this very statement.
WITH inserted AS (
    INSERT INTO jobs (id, type, payload, queue, priority, max_attempts, scheduled_at, timeout_s)
    SELECT id, type, CAST(payload AS jsonb), queue, priority, max_attempts, scheduled_at,
           timeout_s
    FROM unnest(:id::uuid[], :type::text[], :payload::text[], :queue::text[],
                :priority::smallint[], :max_attempts::int[], :scheduled_at::timestamptz[],
                :timeout_s::float8[])
        AS j(id, type, payload, queue, priority, max_attempts, scheduled_at, timeout_s)
    RETURNING queue, scheduled_at
)
SELECT pg_notify('queue_jobs', due.queue)
FROM (
    SELECT DISTINCT queue FROM inserted WHERE scheduled_at IS NULL OR scheduled_at <= now()
) AS due;

-- name: enqueue_one
-- enqueue_many for a single job, with plain parameters instead of arrays: what a lone caller's
-- group commit sends (a batch of one). Measured on a lone caller, unnesting eight one-element
-- arrays cost about a tenth of the call; the rows and the NOTIFY are the same.
WITH inserted AS (
    INSERT INTO jobs (id, type, payload, queue, priority, max_attempts, scheduled_at, timeout_s)
    VALUES (:id::uuid, :type::text, CAST(:payload::text AS jsonb), :queue::text,
            :priority::smallint, :max_attempts::int, :scheduled_at::timestamptz,
            :timeout_s::float8)
    RETURNING queue, scheduled_at
)
SELECT pg_notify('queue_jobs', queue)
FROM inserted
WHERE scheduled_at IS NULL OR scheduled_at <= now();

-- name: get_job
-- A whole job, by primary key: the status endpoints' row (GET /jobs/status, GET /v1/jobs/{id}).
SELECT id, type, payload, status, attempts, max_attempts, error_message, scheduled_at,
       created_at, updated_at, queue, priority, started_at, finished_at, timeout_s,
       cancel_requested_at, lease_owner, lease_expires_at, result, errors, unique_key,
       unique_until, concurrency_key, waiting_for
FROM jobs
WHERE id = :job_id;

-- name: claim
-- Lease up to :limit due jobs of the queues :queues to worker :worker_id for :lease_s seconds,
-- highest priority and oldest first across those queues.
--  * One index scan per queue (the LATERAL): each is an ordered scan of ix_jobs_claimable that
--    stops after :limit rows, whatever the backlog. A single "queue = ANY(:queues) ORDER BY
--    priority" scan cannot use the index order and sorts every pending row instead (40 ms at
--    180k).
--  * SKIP LOCKED lets concurrent claimers pass over each other's rows instead of queueing.
--  * The MATERIALIZED CTE is an optimisation fence: the LIMIT and the row locks apply before
--    the UPDATE, so the planner can never update more rows than the worker has free slots.
--    (With several queues, rows locked by one queue's scan but cut by the final LIMIT stay
--    pending; they are only skipped by other claimers for the duration of this statement.)
--  * The attempt is counted here, at the start, so a worker that dies mid-job has used one.
--  * waited_s is how long the job waited to start, by the database's clock, from when it was
--    due (it was due by then: never negative). The worker reports it as its start latency; a
--    number is cheaper to send and read than the three timestamps it comes from. (Every
--    timestamp is finite and in range: see ck_jobs_timestamps_in_range. Before PostgreSQL 17,
--    "now() - '-infinity'" raises, and one such row failed every claim of its queue.)
--  * attempts + 1 cannot overflow: a pending job always has attempts left
--    (ck_jobs_pending_has_attempts_left), so the result is at most max_attempts.
-- Plain jobs only: ix_jobs_claimable holds no job with a concurrency key or waiting for
-- dependencies (migration 0012), so this never walks past them. When the worker's queues have
-- keyed jobs due (keyed_due), Queue.claim runs claim_keyed instead, which takes both kinds.
WITH due AS MATERIALIZED (
    SELECT c.id
    FROM unnest(:queues::text[]) AS q(name)
    CROSS JOIN LATERAL (
        SELECT j.id, j.priority, coalesce(j.scheduled_at, j.created_at) AS due_at
        FROM jobs AS j
        WHERE j.status = 'pending'
          AND j.concurrency_key IS NULL
          AND j.waiting_for = 0
          AND j.queue = q.name
          AND coalesce(j.scheduled_at, j.created_at) <= now()
        ORDER BY j.priority DESC, coalesce(j.scheduled_at, j.created_at)
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ) AS c
    ORDER BY c.priority DESC, c.due_at
    LIMIT :limit
)
UPDATE jobs AS j
SET status = 'running',
    attempts = j.attempts + 1,
    lease_owner = :worker_id,
    lease_expires_at = now() + make_interval(secs => :lease_s),
    started_at = now(),
    finished_at = NULL,
    updated_at = now()
FROM due
WHERE j.id = due.id
RETURNING j.id, j.type, j.payload, j.queue, j.priority, j.attempts, j.max_attempts,
          j.timeout_s,
          extract(epoch FROM now() - coalesce(j.scheduled_at, j.created_at))::float8 AS waited_s;

-- name: lock_keyed_claims
-- The keyed claims' turn, as queue_claim_keyed (migration 0019) takes it before it claims: a
-- transaction-level advisory lock, let go at commit. The key is an arbitrary constant ("qkey"
-- in ASCII) that no other lock of ours uses (retention's and the migrations' are others).
-- Queue runs it only through claim_keyed; here it names the lock for the tests that hold a
-- turn, and for an operator who looks for its holder (pg_locks, locktype advisory, objid).
SELECT pg_advisory_xact_lock(1902863737);

-- name: claim_keyed
-- claim, while keyed_due says the queues :queues have jobs with a concurrency key due: plain
-- and keyed jobs together, each key's within its limits, in turns across the fleet, in one
-- round trip. queue_claim_keyed (migration 0019) takes the turn (lock_keyed_claims), then runs
-- the claim, whose snapshot is taken once the turn is had; that function holds the statement
-- and says why it is written so. It raises lock_not_available when the turn does not come
-- within :turn_wait_ms; the turn is let go when this statement commits.
SELECT * FROM queue_claim_keyed(:queues::text[], :limit, :worker_id, :lease_s, :turn_wait_ms);

-- name: keyed_due
-- Whether any of the queues :queues has a keyed job due now: Queue.claim asks at most a few
-- times a second, and claim takes keyed jobs too while the answer is yes. One probe of
-- ix_jobs_claimable_keyed per queue (its leading column); a table without keyed jobs answers
-- from an empty index.
SELECT EXISTS (
    SELECT FROM jobs
    WHERE status = 'pending'
      AND concurrency_key IS NOT NULL
      AND waiting_for = 0
      AND queue = ANY(:queues::text[])
      AND coalesce(scheduled_at, created_at) <= now()
);

-- name: finish
-- Record the outcomes of attempts, for many jobs in one statement, by primary key. Each input
-- row is (id, outcome, error, retry_in_s, attempt, result), from the arrays :job_ids,
-- :outcomes, :error_messages, :retry_in_s, :attempts and :results, with outcome one of:
--   completed     the handler returned; result is its return value as JSON text (NULL: none)
--   failed        the handler raised: retry after retry_in_s while attempts remain
--   failed_final  no retry can help (no handler, PermanentError)
--   cancelled     stopped on a cancel request
--   released      interrupted by this worker's shutdown: pending again at once, and the
--                 interrupted attempt is given back (it did not fail)
--   snoozed       the handler asked to run again in retry_in_s seconds (Snooze): pending
--                 then, and the attempt is given back (it did not fail)
-- A failed attempt (failed, failed_final) appends {"attempt", "at", "error"} to errors, of
-- which only the newest :errors_kept are kept (jsonpath's lax mode ignores the indexes before
-- the first when there are fewer). The result is already checked by the worker (valid JSON that
-- jsonb can hold, bounded in size), so one job's value cannot fail the batch's statement.
-- A job whose cancellation was requested ends cancelled unless it completed.
-- dependants_unsettled tells the caller to settle the job's dependants (queue_core.dependencies)
-- in a statement of its own: one that sees dependants enqueued while this one waited for the
-- row. A keyed job leaves running here and that is all its key needs: a key's running jobs are
-- counted, never kept in a counter (claim).
-- Guarded by "still running, still leased to :worker_id, and still this attempt": a job that
-- was rescued and claimed again (by another worker or by this one) is never overwritten by the
-- old run's outcome; such ids are simply absent from the result.
-- One plain UPDATE, no SELECT ... FOR UPDATE first: under READ COMMITTED an UPDATE that meets
-- a row changed concurrently (a cancel request) waits for it, re-checks the WHERE on the new
-- version and computes every SET expression from it, so nothing is lost, and each row is
-- locked and logged once instead of twice (about an eighth of the database's cost per job).
-- The SET expressions all read the row as it was, so the status decision is spelled out in
-- each column that depends on it:
--   pending again  released or snoozed, or failed with attempts left, and no cancel requested
--   scheduled      failed with attempts left and no cancel requested: after its backoff;
--                  snoozed and no cancel requested: after the seconds it asked for
UPDATE jobs AS j
SET status = CASE
        WHEN i.outcome = 'completed' THEN 'completed'
        WHEN i.outcome = 'cancelled' OR j.cancel_requested_at IS NOT NULL THEN 'cancelled'
        WHEN i.outcome IN ('released', 'snoozed') THEN 'pending'
        WHEN i.outcome = 'failed_final' OR j.attempts >= j.max_attempts THEN 'failed'
        ELSE 'pending'
    END,
    -- An attempt given back leaves at least one to run (ck_jobs_pending_has_attempts_left),
    -- even for a job whose max_attempts was lowered by hand while it ran: else that one row
    -- would fail the statement, and with it every outcome of the batch.
    attempts = CASE
        WHEN i.outcome = 'released' THEN greatest(least(j.attempts, j.max_attempts) - 1, 0)
        -- A snooze gives its attempt back only when the job runs again: cancelled, it ran.
        WHEN i.outcome = 'snoozed' AND j.cancel_requested_at IS NULL
            THEN greatest(least(j.attempts, j.max_attempts) - 1, 0)
        ELSE j.attempts
    END,
    error_message = CASE
        WHEN i.outcome = 'completed' THEN NULL
        ELSE coalesce(i.error, j.error_message)
    END,
    result = CASE WHEN i.outcome = 'completed' THEN CAST(i.result AS jsonb) ELSE j.result END,
    errors = CASE
        WHEN i.outcome IN ('failed', 'failed_final') THEN jsonb_path_query_array(
            coalesce(j.errors, '[]'::jsonb)
                || jsonb_build_array(jsonb_build_object(
                    'attempt', j.attempts, 'at', now(), 'error', i.error)),
            '$[last - $keep + 1 to last]',
            jsonb_build_object('keep', :errors_kept::int))
        ELSE j.errors
    END,
    scheduled_at = CASE
        WHEN i.outcome = 'snoozed' AND j.cancel_requested_at IS NULL
            THEN now() + make_interval(secs => i.retry_in_s)
        WHEN i.outcome = 'failed' AND j.cancel_requested_at IS NULL AND j.attempts < j.max_attempts
            THEN now() + make_interval(secs => i.retry_in_s)
        ELSE j.scheduled_at
    END,
    finished_at = CASE
        WHEN j.cancel_requested_at IS NULL
             AND (i.outcome IN ('released', 'snoozed')
                  OR (i.outcome = 'failed' AND j.attempts < j.max_attempts))
            THEN NULL
        ELSE now()
    END,
    lease_owner = NULL,
    lease_expires_at = NULL,
    updated_at = now()
FROM unnest(:job_ids::uuid[], :outcomes::text[], :error_messages::text[],
            :retry_in_s::float8[], :attempts::int[], :results::text[])
    AS i(id, outcome, error, retry_in_s, attempt, result)
WHERE j.id = i.id
  AND j.status = 'running'
  AND j.lease_owner = :worker_id
  AND (i.attempt IS NULL OR j.attempts = i.attempt)
RETURNING j.id, j.status, j.attempts, j.scheduled_at, j.queue, j.dependants_unsettled;

-- name: notify_queues
-- Wake the workers of these queues (after jobs were put back to pending outside enqueue).
SELECT pg_notify('queue_jobs', q) FROM unnest(:queues::text[]) AS q;

-- name: heartbeat
-- Extend the leases of every attempt worker :worker_id runs (ids :job_ids with attempt numbers
-- :attempts) to :lease_s seconds from now, in one statement. Returns those still leased to it
-- and whether each one's cancellation was requested; an attempt missing from the result was
-- taken back (rescued after lost heartbeats, perhaps claimed again) and must stop running here.
-- updated_at is left alone: a heartbeat is not a change of the job's state.
-- A heartbeat never waits for a lock (SKIP LOCKED): it runs beside this worker's own finish,
-- on another connection and over the same rows, and two statements that wait for each other's
-- row locks can deadlock. A row locked now is being finished (by us), cancelled or rescued;
-- its lease is extended at the next beat if it is still ours then, and a lease outlives two
-- missed beats. Whether a job is still ours is read from the statement's snapshot ("ours"),
-- so a row skipped this time is not mistaken for one taken back.
WITH ours AS MATERIALIZED (
    SELECT j.id, j.attempts, j.cancel_requested_at IS NOT NULL AS cancel_requested
    FROM jobs AS j
    JOIN unnest(:job_ids::uuid[], :attempts::int[]) AS held(id, attempt)
        ON j.id = held.id AND j.attempts = held.attempt
    WHERE j.status = 'running'
      AND j.lease_owner = :worker_id
),
unlocked AS MATERIALIZED (
    SELECT j.id
    FROM jobs AS j
    JOIN ours ON ours.id = j.id
    -- Re-checked on the row's latest version once locked: a lease taken back meanwhile
    -- is not extended.
    WHERE j.status = 'running'
      AND j.lease_owner = :worker_id
    FOR UPDATE OF j SKIP LOCKED
),
extended AS (
    UPDATE jobs AS j
    SET lease_expires_at = now() + make_interval(secs => :lease_s)
    FROM unlocked
    WHERE j.id = unlocked.id
)
SELECT id, attempts, cancel_requested FROM ours;

-- name: rescue_expired
-- Take back up to :limit running jobs whose lease ran out: their worker died or lost the
-- database for longer than a lease. The attempt counts (it may have had effects); the job is
-- pending again while attempts remain, else failed, and cancelled if that was requested. SKIP
-- LOCKED and the re-check of the expiry on the locked row make this safe to run on every
-- replica at once, and a heartbeat that renews a lease at the same moment wins.
WITH expired AS MATERIALIZED (
    SELECT id, lease_owner, lease_expires_at
    FROM jobs
    WHERE status = 'running' AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs AS j
SET status = CASE
        WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled'
        WHEN j.attempts >= j.max_attempts THEN 'failed'
        ELSE 'pending'
    END,
    -- Readable by anyone who may read the job: names no worker (host, pid), only what happened.
    error_message = 'rescued from a lost worker: its lease expired',
    -- The lost attempt is a failed one: appended to the errors of past attempts as finish
    -- does, the newest :errors_kept kept.
    errors = jsonb_path_query_array(
        coalesce(j.errors, '[]'::jsonb)
            || jsonb_build_array(jsonb_build_object(
                'attempt', j.attempts, 'at', now(),
                'error', 'rescued from a lost worker: its lease expired')),
        '$[last - $keep + 1 to last]',
        jsonb_build_object('keep', :errors_kept::int)),
    lease_owner = NULL,
    lease_expires_at = NULL,
    finished_at = CASE
        WHEN j.cancel_requested_at IS NOT NULL OR j.attempts >= j.max_attempts THEN now()
    END,
    updated_at = now()
FROM expired AS e
WHERE j.id = e.id
  AND j.status = 'running'
  AND j.lease_expires_at < now()
RETURNING j.id, j.status, j.type, j.queue, e.lease_owner AS lost_worker,
          j.dependants_unsettled;

-- name: cancel
-- Cancel the jobs :job_ids (one, or a batch of a bulk cancel): pending becomes cancelled at
-- once; running gets a cancel request that its worker acts on at its next heartbeat; a finished
-- job is left as it is. Returns each job's status before and after (after NULL: left alone); an
-- unknown id has no row. Rows are locked in id order, so two batches never deadlock. A pending
-- job holds no slot of its key (only running ones do), so no key row changes here; a job
-- cancelled with dependants_unsettled has its dependants cancelled by the caller
-- (queue_core.dependencies).
WITH target AS (
    SELECT id, status FROM jobs WHERE id = ANY(:job_ids::uuid[]) ORDER BY id FOR UPDATE
),
changed AS (
    UPDATE jobs AS j
    SET status = CASE WHEN t.status = 'pending' THEN 'cancelled' ELSE j.status END,
        cancel_requested_at = coalesce(j.cancel_requested_at, now()),
        finished_at = CASE WHEN t.status = 'pending' THEN now() ELSE j.finished_at END,
        updated_at = now()
    FROM target AS t
    WHERE j.id = t.id AND t.status IN ('pending', 'running')
    RETURNING j.id, j.status, j.dependants_unsettled
)
SELECT t.id, t.status AS before, c.status AS after,
       coalesce(c.dependants_unsettled, false) AS dependants_unsettled
FROM target AS t
LEFT JOIN changed AS c ON c.id = t.id;

-- name: retry
-- Put the failed or cancelled jobs :job_ids (one, or a batch of a bulk retry) back to pending,
-- due now, with a fresh attempt budget (attempts back to 0; the last error_message is kept
-- until the next outcome), and wake the workers of their queues. Other statuses are left
-- alone. Returns each job's status before and after (after NULL: left alone); an unknown id
-- has no row. Rows are locked in id order.
-- A job with dependencies waits again for those not completed: counted from its edges locked
-- FOR SHARE (their latest versions: an edge satisfied meanwhile by a parent's completion is
-- seen, and one being satisfied waits for us, then decrements what we wrote). A job with
-- dependants marks them to be settled again at its next outcome.
-- A job that still waits for a dependency that failed for good, was cancelled or was deleted,
-- and is not retried here with it, is left as it is and returned with the first such (by id)
-- and its status (NULL: deleted): retried, it would wait for a job that nothing runs again.
-- So is, transitively, a job here that waits for one left as it is (refused: the recursion,
-- along the edges among the jobs to retry; they form no cycle). Callers retry the oldest
-- first (ids are in creation order, and a job is older than its dependants).
WITH RECURSIVE target AS (
    SELECT id, status FROM jobs WHERE id = ANY(:job_ids::uuid[]) ORDER BY id FOR UPDATE
),
edges AS MATERIALIZED (
    SELECT e.job_id, e.depends_on, e.satisfied
    FROM job_dependencies AS e
    WHERE e.job_id IN (SELECT id FROM target WHERE status IN ('failed', 'cancelled'))
    FOR SHARE
),
refused (job_id, dependency, status) AS (
    SELECT e.job_id, e.depends_on, p.status
    FROM edges AS e
    LEFT JOIN jobs AS p ON p.id = e.depends_on
    WHERE NOT e.satisfied
      AND (p.id IS NULL OR p.status IN ('failed', 'cancelled'))
      AND e.depends_on NOT IN (SELECT id FROM target WHERE status IN ('failed', 'cancelled'))
    UNION
    SELECT e.job_id, e.depends_on, t.status
    FROM refused AS r
    JOIN edges AS e ON e.depends_on = r.job_id AND NOT e.satisfied
    JOIN target AS t ON t.id = r.job_id
),
ended AS MATERIALIZED (
    SELECT DISTINCT ON (job_id) job_id, dependency, status
    FROM refused
    ORDER BY job_id, dependency
),
changed AS (
    UPDATE jobs AS j
    SET status = 'pending',
        waiting_for = (SELECT count(*) FROM edges AS e WHERE e.job_id = j.id AND NOT e.satisfied),
        dependants_unsettled = EXISTS (
            SELECT FROM job_dependencies AS d WHERE d.depends_on = j.id),
        attempts = 0,
        scheduled_at = NULL,
        cancel_requested_at = NULL,
        finished_at = NULL,
        started_at = NULL,
        updated_at = now()
    FROM target AS t
    WHERE j.id = t.id AND t.status IN ('failed', 'cancelled')
      AND t.id NOT IN (SELECT job_id FROM ended)
    RETURNING j.id, j.status, pg_notify('queue_jobs', j.queue)
)
SELECT t.id, t.status AS before, c.status AS after,
       x.dependency AS ended_dependency, x.status AS ended_dependency_status
FROM target AS t
LEFT JOIN changed AS c ON c.id = t.id
LEFT JOIN ended AS x ON x.job_id = t.id;

-- name: delete_finished
-- Delete job :job_id if it has finished (completed, failed or cancelled); a pending or running
-- job is left alone, its worker may still be writing to it, and so is one whose dependants are
-- still to be told of its outcome (unsettled: the caller settles them first). Returns the
-- status it had, whether it was deleted and whether it was unsettled; no row for an unknown id.
WITH target AS (
    SELECT id, status, dependants_unsettled FROM jobs WHERE id = :job_id FOR UPDATE
),
deleted AS (
    DELETE FROM jobs AS j
    USING target AS t
    WHERE j.id = t.id AND t.status IN ('completed', 'failed', 'cancelled')
      AND NOT t.dependants_unsettled
    RETURNING j.id
),
edges AS (
    -- Its own dependency edges go with it (migration 0014).
    DELETE FROM job_dependencies AS e USING deleted AS d WHERE e.job_id = d.id
)
SELECT t.status, EXISTS (SELECT FROM deleted) AS deleted,
       t.dependants_unsettled AS unsettled
FROM target AS t;

-- name: queue_stats
-- Per-queue depth for metrics: due and scheduled pending jobs, running jobs, and the age of the
-- oldest due job. Both halves read only rows that a partial index covers (pending, running),
-- so the cost follows the backlog, never the millions of finished rows beside it. Pending
-- jobs are in one of three partial indexes (plain, keyed, waiting for dependencies: each arm
-- below matches one's predicate); those waiting for dependencies count as scheduled (not due:
-- no worker can take them yet, and their wait is not a backlog's).
WITH pending AS (
    SELECT queue,
           count(*) FILTER (WHERE waiting_for = 0
                            AND coalesce(scheduled_at, created_at) <= now()) AS due,
           count(*) FILTER (WHERE waiting_for > 0
                            OR coalesce(scheduled_at, created_at) > now()) AS scheduled,
           min(coalesce(scheduled_at, created_at))
               FILTER (WHERE waiting_for = 0
                       AND coalesce(scheduled_at, created_at) <= now()) AS oldest_due
    FROM (
        SELECT queue, scheduled_at, created_at, waiting_for FROM jobs
        WHERE status = 'pending' AND concurrency_key IS NULL AND waiting_for = 0
        UNION ALL
        SELECT queue, scheduled_at, created_at, waiting_for FROM jobs
        WHERE status = 'pending' AND concurrency_key IS NOT NULL AND waiting_for = 0
        UNION ALL
        SELECT queue, scheduled_at, created_at, waiting_for FROM jobs
        WHERE status = 'pending' AND waiting_for > 0
    ) AS p
    GROUP BY queue
),
running AS (
    SELECT queue, count(*) AS running
    FROM jobs
    WHERE status = 'running'
    GROUP BY queue
)
SELECT coalesce(p.queue, r.queue) AS queue,
       coalesce(p.due, 0) AS due,
       coalesce(p.scheduled, 0) AS scheduled,
       coalesce(r.running, 0) AS running,
       coalesce(extract(epoch FROM now() - p.oldest_due), 0)::float8 AS oldest_due_age_s
FROM pending AS p
FULL JOIN running AS r ON r.queue = p.queue;

-- name: oldest_transaction_age
-- Age of the oldest open transaction in this database, other than ours. One held open (an
-- "idle in transaction" session) stops vacuum from removing any dead job row newer than it,
-- and every Postgres queue slows down as the table bloats: worth an alert.
SELECT coalesce(extract(epoch FROM max(now() - xact_start)), 0)::float8
FROM pg_stat_activity
WHERE datname = current_database()
  AND pid <> pg_backend_pid()
  AND xact_start IS NOT NULL;

-- name: jobs_table_stats
-- The jobs table's size on disk (heap, TOAST, indexes, in bytes) and what the statistics
-- collector knows of its dead rows and last vacuum: what shows bloat, and whether retention
-- and autovacuum keep the table flat. Catalogue reads only: the sizes are a stat() of each
-- relation's files, the counts come from pg_stat_user_tables; no row of jobs is read, so the
-- cost is the same at 1,000 rows and at 100 million.
SELECT pg_relation_size(c.oid)::float8 AS heap_bytes,
       coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)::float8 AS toast_bytes,
       pg_indexes_size(c.oid)::float8 AS index_bytes,
       coalesce(s.n_live_tup, 0)::float8 AS live_tuples,
       coalesce(s.n_dead_tup, 0)::float8 AS dead_tuples,
       extract(epoch FROM now() - greatest(s.last_autovacuum, s.last_vacuum))::float8
           AS vacuum_age_s,
       extract(epoch FROM now() - greatest(s.last_autoanalyze, s.last_analyze))::float8
           AS analyze_age_s
FROM pg_class AS c
LEFT JOIN pg_stat_user_tables AS s ON s.relid = c.oid
WHERE c.oid = to_regclass('jobs');

-- name: ping
-- Readiness: the database answers.
SELECT 1;
