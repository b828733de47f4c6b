-- Enqueueing a job that carries an idempotency key, a unique key or both (queue_core.keyed).
-- The partial unique indexes ix_jobs_idempotency_key and ix_jobs_unique_key decide who holds a
-- key, never a read before the insert: a check-then-insert lets two API replicas both see
-- "free" and both insert. A block starts with "-- name: <name>" and ends at the next one.
-- The parameters of the inserts are named after the columns they fill (:id, :type, ...), in
-- enqueue_keyed_many each an array of that column's values, as in queries.sql's enqueue_many.

-- name: enqueue_keyed
-- Insert job :id unless a job already holds its idempotency key (:idempotency_key) or its
-- unique key (:unique_key): ON CONFLICT DO NOTHING with no target lets any of the unique
-- indexes refuse it. An insert that meets a holder still uncommitted in another transaction
-- waits for it to commit or roll back, then inserts or not: of concurrent enqueues with one key
-- exactly one gets a row back.
-- No row back means "a holder exists"; keyed_holders then finds it in a statement of its own,
-- since this statement's snapshot, taken before it waited, cannot see a holder that committed
-- meanwhile.
--  * :payload is JSON text, as in enqueue_many, so that any connection can run this.
--  * The key's lifetimes are counted by the database's clock from now: :idempotency_ttl_s
--    seconds for the idempotency key, :unique_for_s for the unique key (NULL: held while
--    pending or running).
--  * The queue is woken in the same transaction when the job is due, as enqueue_many does.
--  * :concurrency_key and :waiting_for: its concurrency key and how many dependencies it waits
--    for (queue_core.gated; NULL and 0 for a job with neither). One waiting is not due: nobody
--    is woken.
WITH inserted AS (
    INSERT INTO jobs (id, type, payload, queue, priority, max_attempts, scheduled_at, timeout_s,
                      idempotency_key, idempotency_fingerprint, idempotency_expires_at,
                      unique_key, unique_until, concurrency_key, waiting_for)
    VALUES (:id, :type, CAST(:payload::text AS jsonb), :queue, :priority, :max_attempts,
            :scheduled_at, :timeout_s, :idempotency_key, :idempotency_fingerprint,
            now() + make_interval(secs => :idempotency_ttl_s::float8),
            :unique_key, now() + make_interval(secs => :unique_for_s::float8), :concurrency_key,
            :waiting_for)
    ON CONFLICT DO NOTHING
    RETURNING id, queue, scheduled_at, waiting_for
)
SELECT i.id, w.woken
FROM inserted AS i
LEFT JOIN LATERAL (
    SELECT CAST(pg_notify('queue_jobs', i.queue) AS text) AS woken
    WHERE (i.scheduled_at IS NULL OR i.scheduled_at <= now()) AND i.waiting_for = 0
) AS w ON true;

-- name: enqueue_keyed_many
-- enqueue_keyed for many jobs in one statement (queue_core.keyed.enqueue_keyed_group): the ones
-- no holder refuses are inserted, each woken queue notified, and their ids returned; the others
-- go through enqueue_keyed one by one to find out who holds their keys. Two jobs of the same
-- statement with one key: the first is inserted, the second meets it as a holder. For jobs with
-- neither a concurrency key nor dependencies (queue_core.gated inserts those).
WITH inserted AS (
    INSERT INTO jobs (id, type, payload, queue, priority, max_attempts, scheduled_at, timeout_s,
                      idempotency_key, idempotency_fingerprint, idempotency_expires_at,
                      unique_key, unique_until)
    SELECT id, type, CAST(payload AS jsonb), queue, priority, max_attempts, scheduled_at,
           timeout_s, idempotency_key, idempotency_fingerprint,
           now() + make_interval(secs => idempotency_ttl_s), unique_key,
           now() + make_interval(secs => unique_for_s)
    FROM unnest(:id::uuid[], :type::text[], :payload::text[], :queue::text[],
                :priority::smallint[], :max_attempts::int[], :scheduled_at::timestamptz[],
                :timeout_s::float8[], :idempotency_key::text[], :idempotency_fingerprint::bytea[],
                :idempotency_ttl_s::float8[], :unique_key::text[], :unique_for_s::float8[])
        AS j(id, type, payload, queue, priority, max_attempts, scheduled_at, timeout_s,
             idempotency_key, idempotency_fingerprint, idempotency_ttl_s, unique_key,
             unique_for_s)
    ON CONFLICT DO NOTHING
    RETURNING id, queue, scheduled_at
)
SELECT i.id, w.woken
FROM inserted AS i
LEFT JOIN LATERAL (
    SELECT CAST(pg_notify('queue_jobs', i.queue) AS text) AS woken
    WHERE i.scheduled_at IS NULL OR i.scheduled_at <= now()
) AS w ON true;

-- name: keyed_holders
-- The jobs holding idempotency key :idempotency_key and unique key :unique_key, each through
-- its own partial index (the unique key's predicate is ix_jobs_unique_key's, so that index
-- serves it). "expired" says the holder's time is up: the key may be taken (release_* below,
-- then insert again).
SELECT 'idempotency' AS held_by, id, idempotency_fingerprint AS fingerprint,
       idempotency_expires_at <= now() AS expired
FROM jobs
WHERE idempotency_key = :idempotency_key
UNION ALL
SELECT 'unique', id, NULL, unique_until IS NOT NULL AND unique_until <= now()
FROM jobs
WHERE unique_key = :unique_key
  AND (unique_until IS NOT NULL OR status IN ('pending', 'running'));

-- name: release_idempotency_key
-- Free the idempotency key of job :job_id once its lifetime is over, so that the key may be
-- used again. Re-checked on the locked row: of concurrent releasers one changes it, the others
-- find it already free. The job itself is left as it is.
UPDATE jobs
SET idempotency_key = NULL, idempotency_fingerprint = NULL, idempotency_expires_at = NULL
WHERE id = :job_id AND idempotency_expires_at <= now();

-- name: release_unique_key
-- Free the unique key of job :job_id once its period (unique_until) is over; re-checked on the
-- locked row as above. Keys held "while pending or running" need no release: the job leaves
-- ix_jobs_unique_key by itself when it finishes.
UPDATE jobs
SET unique_key = NULL
WHERE id = :job_id AND unique_until <= now();
