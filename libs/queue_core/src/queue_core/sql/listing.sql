-- Reading many jobs: the v1 listing and the waiters of GET /v1/jobs/{id}?wait=. Read-only; the
-- statements that change a job stay in queries.sql. Loaded like queries.sql (sql/__init__.py).

-- name: list_jobs
-- One page of jobs, newest id first (ids are UUIDv7: time-ordered), for keyset pagination:
-- :after is the last id of the previous page (NULL: the first page), and the page asks for one
-- row more than it shows (:limit), to know whether another follows. Never a count(*), never
-- OFFSET.
-- Each filter is "NULL or the condition", so one statement serves every combination. That
-- needs a custom plan per execution (queue_core.listing runs it with plan_cache_mode =
-- force_custom_plan): the parameters are then constants, the unused filters fold away, and the
-- planner can pick the partial index of a status filter or walk the primary key backwards. A
-- generic plan would be one plan for all shapes, unable to prove a partial index's predicate.
--  * "scanned" walks an index in id order: the primary key, or ix_jobs_failed_cancelled when
--    only failed or cancelled jobs are asked for (:failed_or_cancelled; its condition is then
--    exactly the index's predicate). It stops after :scan_budget index entries, so a filter
--    that matches rarely, or no more, costs a bounded read instead of the rest of the table; the
--    page is then short and continues from the last row walked (list_jobs_scan_end). Every
--    filter, the status too, applies to what the walk yields, which arrives in id order (no
--    sort), and the outer LIMIT stops the walk as soon as the page is full.
--  * :id_floor and :id_ceiling bound the id from the created_at range (and :id_ceiling from
--    finished_before: a job finishes after it was made): a UUIDv7 carries its creation time,
--    so the walk starts and stops near the range instead of reading past every newer or older
--    job. They are widened by a margin (listing.ID_TIME_MARGIN) for clock skew and for a pool
--    wait between making an id and inserting it; created_at itself stays the exact filter.
--  * The walk reads only what the filters need, which ix_jobs_failed_cancelled holds (INCLUDE):
--    over that index it is an index-only scan, never a visit to the scattered rows of the
--    jobs it skips. The page's rows are read once they are chosen (the join).
--  * The summary columns only: no payload, result or errors, so pages stay small.
SELECT j.id, j.type, j.queue, j.status, j.priority, j.attempts, j.max_attempts, j.created_at,
       j.scheduled_at, j.started_at, j.finished_at, j.error_message
FROM (
    SELECT id, status, type, queue, created_at, finished_at
    FROM jobs
    WHERE (:after::uuid IS NULL OR id < :after::uuid)
      AND (:failed_or_cancelled::bool IS NOT TRUE OR status IN ('failed', 'cancelled'))
      AND (:id_floor::uuid IS NULL OR id >= :id_floor::uuid)
      AND (:id_ceiling::uuid IS NULL OR id < :id_ceiling::uuid)
    ORDER BY id DESC
    LIMIT :scan_budget
) AS scanned
JOIN jobs AS j
    -- The walk's bounds again: whichever join the planner picks reads from the page's place.
    ON j.id = scanned.id
    AND (:after::uuid IS NULL OR j.id < :after::uuid)
    AND (:id_floor::uuid IS NULL OR j.id >= :id_floor::uuid)
    AND (:id_ceiling::uuid IS NULL OR j.id < :id_ceiling::uuid)
WHERE (:statuses::text[] IS NULL OR scanned.status = ANY(:statuses::text[]))
  AND (:types::text[] IS NULL OR scanned.type = ANY(:types::text[]))
  AND (:queues::text[] IS NULL OR scanned.queue = ANY(:queues::text[]))
  AND (:created_after::timestamptz IS NULL
       OR scanned.created_at >= :created_after::timestamptz)
  AND (:created_before::timestamptz IS NULL
       OR scanned.created_at < :created_before::timestamptz)
  AND (:finished_after::timestamptz IS NULL
       OR scanned.finished_at >= :finished_after::timestamptz)
  AND (:finished_before::timestamptz IS NULL
       OR scanned.finished_at < :finished_before::timestamptz)
ORDER BY scanned.id DESC
LIMIT :limit;

-- name: list_jobs_scan_end
-- The last row list_jobs's walk reached when its page came back short: the :scan_budget-th id
-- of the same walk (the parameters are list_jobs's, by the same names), or none if the walk
-- ended before its budget (the listing's true end). Run in the same snapshot as the page
-- (REPEATABLE READ). An index-only scan of the same index: cheaper than the page's walk itself.
SELECT id
FROM jobs
WHERE (:after::uuid IS NULL OR id < :after::uuid)
  AND (:failed_or_cancelled::bool IS NOT TRUE OR status IN ('failed', 'cancelled'))
  AND (:id_floor::uuid IS NULL OR id >= :id_floor::uuid)
  AND (:id_ceiling::uuid IS NULL OR id < :id_ceiling::uuid)
ORDER BY id DESC
OFFSET :scan_budget - 1
LIMIT 1;

-- name: finished_among
-- Which of the jobs :job_ids have finished: the one poll that wakes every waiter of an API
-- process at once (queue_api.job_waiter), by primary key, instead of a NOTIFY on the finish path
-- that every job would pay for whether anyone waits or not.
SELECT id
FROM jobs
WHERE id = ANY(:job_ids::uuid[])
  AND status IN ('completed', 'failed', 'cancelled');

-- name: recent_by_queue
-- Per queue, the jobs created since :id_floor (a UUIDv7 floor: ids carry their creation time, so
-- this is a range of the primary key, read backwards from the newest) and how many of them have
-- completed or failed: the web console's rates. At most :max_rows jobs are read, so a flood
-- costs a bounded read; the caller says "at least" when the cap was reached.
SELECT queue,
       count(*) AS created,
       count(*) FILTER (WHERE status = 'completed') AS completed,
       count(*) FILTER (WHERE status = 'failed') AS failed
FROM (
    SELECT queue, status
    FROM jobs
    WHERE id >= :id_floor::uuid
    ORDER BY id DESC
    LIMIT :max_rows
) AS recent
GROUP BY queue;
