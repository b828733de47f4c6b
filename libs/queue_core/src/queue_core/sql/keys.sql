-- API keys, one named statement each. queue_core.keys.KeyStore is the only caller. A key is
-- found by its prefix (stored in clear, unique) and checked against key_hash, the SHA-256 of
-- the whole key: the secret itself is never stored.

-- name: create_api_key
-- A new key. A duplicate name or (rarely) prefix raises UniqueViolation, which KeyStore turns
-- into a clear error or a new prefix.
INSERT INTO api_keys (name, prefix, key_hash, scopes, queues, expires_at,
                      requests_per_s, requests_burst, jobs_per_s, jobs_burst)
VALUES ($1, $2, $3, $4::text[], $5::text[], $6, $7, $8, $9, $10)
RETURNING name, prefix, scopes, queues, expires_at, created_at, last_used_at, revoked_at,
          requests_per_s, requests_burst, jobs_per_s, jobs_burst;

-- name: list_api_keys
-- Every key, newest first, without its hash.
SELECT name, prefix, scopes, queues, expires_at, created_at, last_used_at, revoked_at,
       requests_per_s, requests_burst, jobs_per_s, jobs_burst
FROM api_keys
ORDER BY created_at DESC, name;

-- name: find_api_key
-- What the API checks a presented key against, by the unique prefix.
SELECT name, prefix, key_hash, scopes, queues, expires_at, created_at, last_used_at, revoked_at,
       requests_per_s, requests_burst, jobs_per_s, jobs_burst
FROM api_keys
WHERE prefix = $1;

-- name: revoke_api_key
-- Revoke the key named $1, or whose prefix is $1 (names cannot look like a prefix). Revoking a
-- revoked key keeps its first revocation time, so repeating the command is harmless.
UPDATE api_keys
SET revoked_at = coalesce(revoked_at, now())
WHERE name = $1 OR prefix = $1
RETURNING name, prefix, scopes, queues, expires_at, created_at, last_used_at, revoked_at,
          requests_per_s, requests_burst, jobs_per_s, jobs_burst;

-- name: mark_api_keys_used
-- Write-behind of last_used_at for the keys in $1, at the instants in $2 (the API batches them,
-- at most one per key per minute). GREATEST: an older flush arriving late never moves it back.
UPDATE api_keys AS k
SET last_used_at = GREATEST(k.last_used_at, used.at)
FROM unnest($1::text[], $2::timestamptz[]) AS used (prefix, at)
WHERE k.prefix = used.prefix;

-- name: set_api_key_limits
-- Replace the rate limits of the key named $1, or whose prefix is $1 (NULL: no such limit).
-- Its buckets start full again: one emptied at the old rate would keep the key waiting as long
-- as the old rate said (days, at one a day), whatever the new one.
WITH changed AS (
    UPDATE api_keys
    SET requests_per_s = $2, requests_burst = $3, jobs_per_s = $4, jobs_burst = $5
    WHERE name = $1 OR prefix = $1
    RETURNING name, prefix, scopes, queues, expires_at, created_at, last_used_at, revoked_at,
              requests_per_s, requests_burst, jobs_per_s, jobs_burst
), refilled AS (
    UPDATE api_key_rate_buckets AS b SET tat = '-infinity' FROM changed AS c
    WHERE b.prefix = c.prefix
)
SELECT * FROM changed;

-- name: take_rate_tokens
-- Take up to $5 tokens from the bucket of key $1 for limit $2 ('requests' or 'jobs'), which
-- refills at $3 tokens a second and holds at most $4: the generic cell rate algorithm, whose
-- state is one instant, tat. The bucket is full when tat <= now and empty when
-- tat = now + burst / rate; each token moves tat on by 1 / rate. The grant is written twice
-- (granted, and tat's step) because SET sees only the old row, and RETURNING only the new one.
-- The row lock serialises the replicas. Returns no row if the bucket does not exist yet
-- (ensure_rate_bucket makes it), else what was granted and, if fewer than $6 tokens were, the
-- seconds until the missing ones will have refilled. 1e-9 absorbs floating-point error.
UPDATE api_key_rate_buckets AS b
SET granted = least($5::int, greatest(0, floor(
        $4::float8 - extract(epoch FROM greatest(b.tat, t.now) - t.now) * $3::float8 + 1e-9
    )))::int,
    tat = greatest(b.tat, t.now) + make_interval(secs => least($5::int, greatest(0, floor(
        $4::float8 - extract(epoch FROM greatest(b.tat, t.now) - t.now) * $3::float8 + 1e-9
    ))) / $3::float8)
FROM (SELECT clock_timestamp() AS now) AS t
WHERE b.prefix = $1 AND b.kind = $2
RETURNING b.granted,
          greatest(0, extract(epoch FROM b.tat - t.now)
                      + ($6::int - b.granted - $4::float8) / $3::float8)::float8 AS wait_s;

-- name: ensure_rate_bucket
-- A full bucket for key $1 and limit $2, unless it exists (or the key does not: then the
-- foreign key fails, and the key was deleted meanwhile).
INSERT INTO api_key_rate_buckets (prefix, kind, tat)
VALUES ($1, $2, '-infinity')
ON CONFLICT (prefix, kind) DO NOTHING;
