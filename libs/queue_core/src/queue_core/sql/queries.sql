-- The queue's semantics, one named statement each. queue_core.queue.Queue is the only caller,
-- and the only code that changes a job's status. Each statement is prepared once per
-- connection by asyncpg. A block starts with "-- name: <name>" and ends at the next one.

-- name: enqueue
-- Insert one job and wake listening workers when it is due now. The NOTIFY rides in the same
-- statement (and so the same transaction) as the insert: a worker can never be woken for a row
-- it cannot see yet, and one that is not woken still finds it on its next poll.
WITH inserted AS (
    INSERT INTO jobs (id, type, payload, queue, priority, max_attempts, scheduled_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    RETURNING queue, scheduled_at
)
SELECT pg_notify('queue_jobs', queue)
FROM inserted
WHERE scheduled_at IS NULL OR scheduled_at <= now();

-- name: get_job
-- The status endpoint's row, by primary key.
SELECT id, type, payload, status, attempts, max_attempts, error_message, scheduled_at,
       created_at, updated_at, queue, priority, started_at, finished_at
FROM jobs
WHERE id = $1;

-- name: claim
-- Lease up to $3 due jobs of the queues in $2 to worker $1 for $4 seconds, highest priority and
-- oldest first. The MATERIALIZED CTE is an optimisation fence: it makes the LIMIT and the row
-- locks apply before the UPDATE, so the planner can never update more rows than the worker has
-- free slots. SKIP LOCKED lets concurrent claimers pass over each other's rows instead of
-- queueing behind them. The WHERE and ORDER BY match ix_jobs_claimable exactly, so this is an
-- index scan over pending rows only. The attempt is counted here, at the start, so a worker
-- that dies mid-job has still used one.
WITH due AS MATERIALIZED (
    SELECT id
    FROM jobs
    WHERE status = 'pending'
      AND queue = ANY($2::text[])
      AND coalesce(scheduled_at, created_at) <= now()
    ORDER BY queue, priority DESC, coalesce(scheduled_at, created_at)
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs AS j
SET status = 'running',
    attempts = j.attempts + 1,
    lease_owner = $1,
    lease_expires_at = now() + make_interval(secs => $4),
    started_at = now(),
    finished_at = NULL,
    updated_at = now()
FROM due
WHERE j.id = due.id
RETURNING j.id, j.type, j.payload, j.queue, j.priority, j.attempts, j.max_attempts,
          j.created_at, j.scheduled_at, j.started_at;

-- name: complete
-- Mark jobs completed, by primary key. Guarded by "still running and still leased to me": a job
-- that was rescued from this worker and handed to another is never overwritten.
UPDATE jobs
SET status = 'completed',
    error_message = NULL,
    lease_owner = NULL,
    lease_expires_at = NULL,
    finished_at = now(),
    updated_at = now()
WHERE id = ANY($1::uuid[])
  AND status = 'running'
  AND lease_owner = $2
RETURNING id;

-- name: fail
-- Record failed attempts, by primary key, under the same lease guard as complete. Each row
-- carries its error, the backoff before the next attempt, and whether it must not be retried
-- (e.g. no handler for its type). A job with attempts left goes back to pending, due after its
-- backoff; otherwise it is failed for good.
WITH outcome AS (
    SELECT f.id, f.error, f.retry_in_s,
           (f.final OR j.attempts >= j.max_attempts) AS give_up
    FROM unnest($1::uuid[], $2::text[], $3::float8[], $4::bool[]) AS f(id, error, retry_in_s, final)
    JOIN jobs AS j ON j.id = f.id
)
UPDATE jobs AS j
SET status = CASE WHEN o.give_up THEN 'failed' ELSE 'pending' END,
    scheduled_at = CASE
        WHEN o.give_up THEN j.scheduled_at
        ELSE now() + make_interval(secs => o.retry_in_s)
    END,
    error_message = o.error,
    lease_owner = NULL,
    lease_expires_at = NULL,
    finished_at = CASE WHEN o.give_up THEN now() END,
    updated_at = now()
FROM outcome AS o
WHERE j.id = o.id
  AND j.status = 'running'
  AND j.lease_owner = $5
RETURNING j.id, j.status, j.attempts, j.scheduled_at;

-- name: ping
-- Readiness: the database answers.
SELECT 1;
