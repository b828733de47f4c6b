-- Reading many jobs: the v1 listing and the waiters of GET /v1/jobs/{id}?wait=. Read-only; the
-- statements that change a job stay in queries.sql. Loaded like queries.sql (sql/__init__.py).

-- name: list_jobs
-- One page of jobs, newest id first (ids are UUIDv7: time-ordered), for keyset pagination: $1
-- is the last id of the previous page (NULL: the first page), and the page asks for one row
-- more than it shows ($11), to know whether another follows. Never a count(*), never OFFSET.
-- Each filter is "NULL or the condition", so one statement serves every combination. That
-- needs a custom plan per execution (queue_core.listing runs it with plan_cache_mode =
-- force_custom_plan): the parameters are then constants, the unused filters fold away, and the
-- planner can pick the partial index of a status filter or walk the primary key backwards. A
-- generic plan would be one plan for all shapes, unable to prove a partial index's predicate.
--  * "scanned" walks an index in id order: the primary key, or ix_jobs_failed_cancelled when
--    only failed or cancelled jobs are asked for ($13; its condition is then exactly the
--    index's predicate). It stops after $12 index entries (the scan budget), so a filter that
--    matches rarely, or no more, costs a bounded read instead of the rest of the table; the
--    page is then short and continues from the last row walked (list_jobs_scan_end). Every
--    filter, the status too, applies to what the walk yields, which arrives in id order (no
--    sort), and the outer LIMIT stops the walk as soon as the page is full.
--  * $9 and $10 bound the id from the created_at range (and $10 from finished_before: a job
--    finishes after it was made): a UUIDv7 carries its creation time, so the walk starts and
--    stops near the range instead of reading past every newer or older job. They are widened
--    by a margin (listing.ID_TIME_MARGIN) for clock skew and for a pool wait between making
--    an id and inserting it; created_at itself stays the exact filter.
--  * The walk reads only what the filters need, which ix_jobs_failed_cancelled holds (INCLUDE):
--    over that index it is an index-only scan, never a visit to the scattered rows of the
--    jobs it skips. The page's rows are read once they are chosen (the join).
--  * The summary columns only: no payload, result or errors, so pages stay small.
SELECT j.id, j.type, j.queue, j.status, j.priority, j.attempts, j.max_attempts, j.created_at,
       j.scheduled_at, j.started_at, j.finished_at, j.error_message
FROM (
    SELECT id, status, type, queue, created_at, finished_at
    FROM jobs
    WHERE ($1::uuid IS NULL OR id < $1::uuid)
      AND ($13::bool IS NOT TRUE OR status IN ('failed', 'cancelled'))
      AND ($9::uuid IS NULL OR id >= $9::uuid)
      AND ($10::uuid IS NULL OR id < $10::uuid)
    ORDER BY id DESC
    LIMIT $12
) AS scanned
JOIN jobs AS j
    -- The walk's bounds again: whichever join the planner picks reads from the page's place.
    ON j.id = scanned.id
    AND ($1::uuid IS NULL OR j.id < $1::uuid)
    AND ($9::uuid IS NULL OR j.id >= $9::uuid)
    AND ($10::uuid IS NULL OR j.id < $10::uuid)
WHERE ($2::text[] IS NULL OR scanned.status = ANY($2::text[]))
  AND ($3::text[] IS NULL OR scanned.type = ANY($3::text[]))
  AND ($4::text[] IS NULL OR scanned.queue = ANY($4::text[]))
  AND ($5::timestamptz IS NULL OR scanned.created_at >= $5::timestamptz)
  AND ($6::timestamptz IS NULL OR scanned.created_at < $6::timestamptz)
  AND ($7::timestamptz IS NULL OR scanned.finished_at >= $7::timestamptz)
  AND ($8::timestamptz IS NULL OR scanned.finished_at < $8::timestamptz)
ORDER BY scanned.id DESC
LIMIT $11;

-- name: list_jobs_scan_end
-- The last row list_jobs's walk reached when its page came back short: the $5-th id of the
-- same walk (parameters as list_jobs's $1, $13, $9, $10), or none if the walk ended before
-- its budget (the listing's true end). Run in the same snapshot as the page (REPEATABLE READ).
-- An index-only scan of the same index: cheaper than the page's walk itself.
SELECT id
FROM jobs
WHERE ($1::uuid IS NULL OR id < $1::uuid)
  AND ($2::bool IS NOT TRUE OR status IN ('failed', 'cancelled'))
  AND ($3::uuid IS NULL OR id >= $3::uuid)
  AND ($4::uuid IS NULL OR id < $4::uuid)
ORDER BY id DESC
OFFSET $5 - 1
LIMIT 1;

-- name: finished_among
-- Which of the jobs in $1 have finished: the one poll that wakes every waiter of an API process
-- at once (queue_api.job_waiter), by primary key, instead of a NOTIFY on the finish path that
-- every job would pay for whether anyone waits or not.
SELECT id
FROM jobs
WHERE id = ANY($1::uuid[])
  AND status IN ('completed', 'failed', 'cancelled');

-- name: recent_by_queue
-- Per queue, the jobs created since $1 (a UUIDv7 floor: ids carry their creation time, so this
-- is a range of the primary key, read backwards from the newest) and how many of them have
-- completed or failed: the web console's rates. At most $2 jobs are read, so a flood costs a
-- bounded read; the caller says "at least" when the cap was reached.
SELECT queue,
       count(*) AS created,
       count(*) FILTER (WHERE status = 'completed') AS completed,
       count(*) FILTER (WHERE status = 'failed') AS failed
FROM (
    SELECT queue, status
    FROM jobs
    WHERE id >= $1::uuid
    ORDER BY id DESC
    LIMIT $2
) AS recent
GROUP BY queue;
