-- Periodic jobs (queue_core.schedules): the schedules table and the jobs of their ticks.
-- The exactly-once rule lives in take_tick: a tick's job is inserted only by the statement that
-- moves the schedule's watermark (last_tick_at) up to that tick. A block starts with
-- "-- name: <name>" and ends at the next one.

-- name: register_schedule
-- Create schedule :name as a worker declares it, or update its definition (a deploy changed the
-- cron, say). Its state (paused_at, last_tick_at, last run) and created_at stay: a restart
-- neither resumes a paused schedule nor replays its ticks.
INSERT INTO schedules AS s (name, queue, cron, every_s, tz, missed, grace_s, payload)
VALUES (:name, :queue, :cron, :every_s, :tz, :missed, :grace_s, CAST(:payload::text AS jsonb))
ON CONFLICT (name) DO UPDATE
SET queue = excluded.queue,
    cron = excluded.cron,
    every_s = excluded.every_s,
    tz = excluded.tz,
    missed = excluded.missed,
    grace_s = excluded.grace_s,
    payload = excluded.payload,
    updated_at = now()
WHERE (s.queue, s.cron, s.every_s, s.tz, s.missed, s.grace_s, s.payload)
      IS DISTINCT FROM
      (excluded.queue, excluded.cron, excluded.every_s, excluded.tz, excluded.missed,
       excluded.grace_s, excluded.payload);

-- name: schedule_states
-- The database's clock and the rows of schedules :names: what a worker's scheduler reads each
-- turn. Every worker judges which ticks are due by this one clock, not by its own. The outer
-- row keeps now() when no schedule matches.
--
-- This statement, list_schedules and set_schedule_paused return a row's timestamps only when
-- Python's datetime can hold them all (years 1 to 9999, or an infinity, which asyncpg reads as
-- its min or max): the table has no range check, and one timestamp edited by hand beyond that
-- made asyncpg fail the whole fetch, stopping every schedule. Otherwise the four come back NULL
-- and out_of_range true: that schedule alone is unreadable, the others read as ever.
SELECT n.now, s.name, s.queue, s.cron, s.every_s, s.tz, s.missed, s.grace_s,
       CAST(s.payload AS text) AS payload,
       CASE WHEN r.readable THEN s.paused_at END AS paused_at,
       CASE WHEN r.readable THEN s.last_tick_at END AS last_tick_at,
       CASE WHEN r.readable THEN s.last_run_at END AS last_run_at,
       s.last_job_id, CASE WHEN r.readable THEN s.created_at END AS created_at,
       NOT r.readable AS out_of_range
FROM (SELECT now() AS now) AS n
LEFT JOIN (
    schedules AS s
    CROSS JOIN LATERAL (
        SELECT bool_and(ts IS NULL OR NOT isfinite(ts)
                        OR ts BETWEEN '0001-01-01 00:00:00+00' AND '9999-12-31 23:59:59.999999+00')
               AS readable
        FROM unnest(ARRAY[s.paused_at, s.last_tick_at, s.last_run_at, s.created_at]) AS t (ts)
    ) AS r
) ON s.name = ANY(:names::text[])
ORDER BY s.name;

-- name: take_tick
-- Deal with tick :tick of schedule :name: move its watermark to :tick and, when :run, insert the
-- tick's job :job_id (type :name, payload :payload as JSON text, queue :queue, due at the tick).
-- Exactly one of any number of workers taking the same tick gets a row back (id: the job, NULL
-- when :run is false):
--  * The UPDATE changes the row only while the watermark is before the tick. Concurrent
--    takers queue on the row's lock; under READ COMMITTED each one that waited re-checks the
--    condition on the row the winner committed, finds the watermark at the tick, and changes
--    nothing. The INSERT reads only what this UPDATE returned, so a loser inserts nothing.
--  * The job also holds unique key :unique_key until :unique_for_s seconds after the tick, and
--    ON CONFLICT DO NOTHING leaves it to ix_jobs_unique_key: a second guard should the
--    watermark ever be set back by hand.
--  * A paused schedule takes no tick. The queue is woken in the same transaction.
WITH advanced AS (
    UPDATE schedules
    SET last_tick_at = :tick,
        last_run_at = CASE WHEN :run THEN :tick ELSE last_run_at END,
        last_job_id = CASE WHEN :run THEN :job_id ELSE last_job_id END,
        updated_at = now()
    WHERE name = :name
      AND paused_at IS NULL
      AND (last_tick_at IS NULL OR last_tick_at < :tick)
    RETURNING name
),
inserted AS (
    INSERT INTO jobs (id, type, payload, queue, scheduled_at, unique_key, unique_until)
    SELECT :job_id, :name, CAST(:payload::text AS jsonb), :queue, :tick, :unique_key,
           :tick + make_interval(secs => :unique_for_s::float8)
    FROM advanced
    WHERE :run
    ON CONFLICT DO NOTHING
    RETURNING id, queue
)
SELECT a.name, i.id, w.woken
FROM advanced AS a
LEFT JOIN inserted AS i ON true
LEFT JOIN LATERAL (
    SELECT CAST(pg_notify('queue_jobs', i.queue) AS text) AS woken WHERE i.id IS NOT NULL
) AS w ON true;

-- name: list_schedules
-- Every schedule, by name (GET /v1/schedules): a row per declared schedule, so no paging.
SELECT s.name, s.queue, s.cron, s.every_s, s.tz, s.missed, s.grace_s,
       CAST(s.payload AS text) AS payload,
       CASE WHEN r.readable THEN s.paused_at END AS paused_at,
       CASE WHEN r.readable THEN s.last_tick_at END AS last_tick_at,
       CASE WHEN r.readable THEN s.last_run_at END AS last_run_at,
       s.last_job_id, CASE WHEN r.readable THEN s.created_at END AS created_at,
       NOT r.readable AS out_of_range
FROM schedules AS s
CROSS JOIN LATERAL (
    SELECT bool_and(ts IS NULL OR NOT isfinite(ts)
                    OR ts BETWEEN '0001-01-01 00:00:00+00' AND '9999-12-31 23:59:59.999999+00')
           AS readable
    FROM unnest(ARRAY[s.paused_at, s.last_tick_at, s.last_run_at, s.created_at]) AS t (ts)
) AS r
ORDER BY s.name;

-- name: set_schedule_paused
-- Pause (:paused true) or resume (:paused false) schedule :name; no row back if there is none.
-- Pausing a paused schedule keeps when it was first paused. Resuming moves the watermark to now:
-- the ticks due while it was paused are not run (a pause is a decision, not an outage). A pause
-- takes effect at once (take_tick skips a paused row); workers notice a resume at their next
-- read, within queue_worker.scheduler.SCHEDULE_REFRESH_S.
WITH changed AS (
    UPDATE schedules AS s
    SET paused_at = CASE WHEN :paused THEN coalesce(s.paused_at, now()) END,
        last_tick_at = CASE
            WHEN :paused OR s.paused_at IS NULL THEN s.last_tick_at
            ELSE greatest(s.last_tick_at, now())
        END,
        updated_at = now()
    WHERE s.name = :name
    RETURNING s.*
)
SELECT c.name, c.queue, c.cron, c.every_s, c.tz, c.missed, c.grace_s,
       CAST(c.payload AS text) AS payload,
       CASE WHEN r.readable THEN c.paused_at END AS paused_at,
       CASE WHEN r.readable THEN c.last_tick_at END AS last_tick_at,
       CASE WHEN r.readable THEN c.last_run_at END AS last_run_at,
       c.last_job_id, CASE WHEN r.readable THEN c.created_at END AS created_at,
       NOT r.readable AS out_of_range
FROM changed AS c
CROSS JOIN LATERAL (
    SELECT bool_and(ts IS NULL OR NOT isfinite(ts)
                    OR ts BETWEEN '0001-01-01 00:00:00+00' AND '9999-12-31 23:59:59.999999+00')
           AS readable
    FROM unnest(ARRAY[c.paused_at, c.last_tick_at, c.last_run_at, c.created_at]) AS t (ts)
) AS r;
