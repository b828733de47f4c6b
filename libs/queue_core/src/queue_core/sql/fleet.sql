-- The fleet: which workers are alive and what they serve (table workers), and which queues are
-- paused (table queues). queue_core.fleet.Fleet is the only caller. Both tables are small (a
-- row per worker process, a row per queue ever paused), so every statement here is cheap;
-- none reads the jobs table.

-- name: worker_beat
-- Register worker :worker_id, or note that it is still alive: an upsert, so that a row pruned
-- during a long outage comes back at the next beat. started_at keeps the first registration's
-- time. The same statement prunes the rows of workers not seen for :gone_after_s seconds (they
-- died without unregistering): SKIP LOCKED, so that workers pruning together never wait on each
-- other, and never this worker's own row, which the INSERT is about to touch.
WITH gone AS (
    SELECT id FROM workers
    WHERE last_seen_at < now() - make_interval(secs => :gone_after_s) AND id <> :worker_id
    FOR UPDATE SKIP LOCKED
),
pruned AS (
    DELETE FROM workers AS w USING gone WHERE w.id = gone.id
)
INSERT INTO workers (id, host, pid, queues, task_types, concurrency)
VALUES (:worker_id, :host, :pid, :queues::text[], :task_types::text[], :concurrency)
ON CONFLICT (id) DO UPDATE
SET host = excluded.host,
    pid = excluded.pid,
    queues = excluded.queues,
    task_types = excluded.task_types,
    concurrency = excluded.concurrency,
    last_seen_at = now();

-- name: worker_leave
-- A worker's clean shutdown: its row goes at once instead of after the liveness window.
DELETE FROM workers WHERE id = :worker_id;

-- name: live_workers
-- The workers seen within the last :gone_after_s seconds, oldest first (by
-- ix_workers_last_seen_at).
SELECT id, host, pid, queues, task_types, concurrency, started_at, last_seen_at
FROM workers
WHERE last_seen_at >= now() - make_interval(secs => :gone_after_s)
ORDER BY started_at, id;

-- name: paused_queues
-- Which of :queues are paused: what each worker reads every second to know where it may claim.
-- One primary-key lookup per queue.
SELECT name FROM queues WHERE name = ANY(:queues::text[]) AND paused_at IS NOT NULL;

-- name: queue_states
-- Every queue that was ever paused or resumed, with since when it is paused (NULL: it runs).
SELECT name, paused_at FROM queues ORDER BY name;

-- name: set_queue_paused
-- Pause (:paused true) or resume (:paused false) :queue, creating its row if needed. Pausing a
-- paused queue keeps the time it was first paused. The NOTIFY (channel queue_pauses, the queue's
-- name) rides in the same transaction: workers re-read the paused queues when it arrives, so a
-- pause takes effect within milliseconds, and within a second by their poll if it is missed.
WITH changed AS (
    INSERT INTO queues AS q (name, paused_at, updated_at)
    VALUES (:queue, CASE WHEN :paused THEN now() END, now())
    ON CONFLICT (name) DO UPDATE
    SET paused_at = CASE WHEN :paused THEN coalesce(q.paused_at, now()) END,
        updated_at = now()
    RETURNING q.name, q.paused_at
)
SELECT name, paused_at, pg_notify('queue_pauses', name) IS NULL AS notified
FROM changed;
