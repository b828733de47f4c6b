-- Retention: deleting finished jobs once they are older than their status's retention.
-- queue_core.retention.Retention is the only caller; see its docstring for the design.
--
-- Each delete statement is one batch and its own transaction (autocommit): it locks at most
-- :batch rows, for the milliseconds the statement takes, and takes them SKIP LOCKED so that it
-- never waits on a job someone else holds (an admin's retry, a cancel). A job's idempotency
-- and unique keys live in its row, so they go with it; a job whose key still holds (its
-- idempotency_expires_at or unique_until not reached) is kept until the key expires, so that
-- retention never frees a key early.
--
-- Finding the rows without a new index. Ids are UUIDv7: their first 48 bits are the creation
-- time in Unix milliseconds, so the primary key is in creation order. A job finishes after it
-- is created, so a job finished before the cutoff was created before it: every row to delete
-- has an id below the UUID of (cutoff + :clock_slack_s seconds), the slack covering the clock of
-- the process that made the id (the API, not the database). Each statement walks an index in id
-- order from :from_id (where the last batch ended) to that bound, so a batch reads the rows it
-- deletes plus the ones kept in that range, never the rest of the table. The status is a
-- literal in each statement, not a parameter: a partial index (ix_jobs_failed_cancelled) is
-- usable only when the planner can prove the predicate, which a generic plan for a parameter
-- never lets it. So delete_finished_batch is written once with the placeholder {status} (not a
-- :name, which would become a parameter), and queue_core.retention makes one statement of it
-- per final status, the status's quoted literal in place of the placeholder (left in, it is a
-- syntax error, not a wrong delete). delete_finished_batch_not_uuid7, for the ids that are not
-- UUIDv7 (rows carried over from the Go service), is made the same way.

-- name: retention_try_lock
-- The session-level advisory lock that makes one replica at a time do retention; false when
-- another replica holds it. Held by the connection that runs the round, released after it
-- (and by the server if that connection dies).
SELECT pg_try_advisory_lock(:lock_key);

-- name: retention_unlock
SELECT pg_advisory_unlock(:lock_key);

-- name: delete_finished_batch
-- Up to :batch jobs of status {status} finished more than :retention_s seconds ago, from id
-- :from_id up, walking the primary key (completed) or ix_jobs_failed_cancelled (failed,
-- cancelled), with their own dependency edges. Returns the ids deleted; the largest is where the
-- next batch starts.
WITH doomed AS (
    SELECT id FROM jobs
    WHERE status = {status}
      AND id >= :from_id::uuid
      AND id < (lpad(to_hex((extract(epoch FROM now() - make_interval(
                                 secs => :retention_s::float8 - :clock_slack_s::float8))
                             * 1000)::bigint), 12, '0') || '00000000000000000000')::uuid
      AND finished_at < now() - make_interval(secs => :retention_s)
      AND (idempotency_expires_at IS NULL OR idempotency_expires_at <= now())
      AND (unique_until IS NULL OR unique_until <= now())
      -- Not before its dependants are told of its outcome (its worker died first: the
      -- rescuer's sweep tells them): deleted, it would leave them waiting for ever.
      AND NOT dependants_unsettled
    ORDER BY id
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
),
gone AS (
    DELETE FROM jobs AS j USING doomed WHERE j.id = doomed.id
    RETURNING j.id
),
edges AS (
    -- The deleted jobs' own dependency edges go with them (migration 0014).
    DELETE FROM job_dependencies AS e USING gone WHERE e.job_id = gone.id
)
SELECT id FROM gone;

-- name: delete_finished_batch_not_uuid7
-- Up to :batch jobs of status {status} finished more than :retention_s seconds ago whose id is
-- not a UUIDv7, from id :from_id up, with their own dependency edges; the same rules as
-- delete_finished_batch otherwise. Such ids are the rows carried over from the Go service this
-- one replaced (random UUIDv4s). delete_finished_batch finds few of them: a random id says
-- nothing of when its job was made, and only the ids whose first 48 bits read as a time before
-- the cutoff (0.6 % of UUIDv4s today) fall below its bound. Every full sweep runs this too.
--
-- Where they are without a new index: every id this queue makes is a UUIDv7 from a clock at
-- most :clock_slack_s ahead of the database's, so none is at or above the UUID of
-- (now + :clock_slack_s). Above that bound lie the other ids (99.4 % of UUIDv4s), so this
-- walks the same index as delete_finished_batch from there to the end of the id space, reading
-- the non-UUIDv7 rows (completed: all of them; failed, cancelled: theirs) and no row the queue
-- made. Below the cutoff's UUID, delete_finished_batch deletes them along with the UUIDv7 rows
-- (it tests no version). In between, a band as wide as the retention, a UUIDv4 falls with odds
-- of retention / 2^48 ms (1 in 108,000 for 30 days): such a row is deleted by
-- delete_finished_batch once its id's time passes the cutoff, at most one retention late. The
-- version test leaves a UUIDv7 from a clock running far ahead to delete_finished_batch, as
-- before: this pass changes nothing for the ids the queue makes.
-- A statement of its own, so that each walks an exact index range under any plan (a bound
-- switched by a parameter is no index bound in a generic plan); from finished_at on, it is
-- delete_finished_batch line for line, which tests/core/test_retention.py checks.
WITH doomed AS (
    SELECT id FROM jobs
    WHERE status = {status}
      AND id >= greatest(:from_id::uuid,
                         (lpad(to_hex((extract(epoch FROM now() + make_interval(
                                           secs => :clock_slack_s::float8))
                                       * 1000)::bigint), 12, '0') || '00000000000000000000')::uuid)
      -- The version digit: xxxxxxxx-xxxx-Vxxx-xxxx-xxxxxxxxxxxx.
      AND substr(id::text, 15, 1) <> '7'
      AND finished_at < now() - make_interval(secs => :retention_s)
      AND (idempotency_expires_at IS NULL OR idempotency_expires_at <= now())
      AND (unique_until IS NULL OR unique_until <= now())
      AND NOT dependants_unsettled
    ORDER BY id
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
),
gone AS (
    DELETE FROM jobs AS j USING doomed WHERE j.id = doomed.id
    RETURNING j.id
),
edges AS (
    DELETE FROM job_dependencies AS e USING gone WHERE e.job_id = gone.id
)
SELECT id FROM gone;

-- name: oldest_finished
-- How long ago the oldest (first created) job of each final status that retention may delete
-- (no key still holding) finished, in seconds; NULL when there is none: what tells whether
-- retention keeps up (a row without finished_at, which only an edit by hand makes, would hide
-- every other). "Oldest" by id, i.e. by creation: the first such row met in id order,
-- so each is a short index walk (failed and cancelled: ix_jobs_failed_cancelled; completed:
-- the primary key, past the older rows of other statuses), never a scan of the history. A
-- job created early but finished late makes it read a little young; the alert it feeds
-- allows a margin far above that.
SELECT
    (SELECT extract(epoch FROM now() - finished_at)::float8 FROM jobs
     WHERE status = 'completed'
       AND (idempotency_expires_at IS NULL OR idempotency_expires_at <= now())
       AND (unique_until IS NULL OR unique_until <= now())
       AND NOT dependants_unsettled AND finished_at IS NOT NULL
     ORDER BY id LIMIT 1) AS completed,
    (SELECT extract(epoch FROM now() - finished_at)::float8 FROM jobs
     WHERE status = 'failed'
       AND (idempotency_expires_at IS NULL OR idempotency_expires_at <= now())
       AND (unique_until IS NULL OR unique_until <= now())
       AND NOT dependants_unsettled AND finished_at IS NOT NULL
     ORDER BY id LIMIT 1) AS failed,
    (SELECT extract(epoch FROM now() - finished_at)::float8 FROM jobs
     WHERE status = 'cancelled'
       AND (idempotency_expires_at IS NULL OR idempotency_expires_at <= now())
       AND (unique_until IS NULL OR unique_until <= now())
       AND NOT dependants_unsettled AND finished_at IS NOT NULL
     ORDER BY id LIMIT 1) AS cancelled;
