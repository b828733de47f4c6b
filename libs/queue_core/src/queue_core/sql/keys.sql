-- API keys, one named statement each. queue_core.keys.KeyStore is the only caller. A key is
-- found by its prefix (stored in clear, unique) and checked against key_hash, the SHA-256 of
-- the whole key: the secret itself is never stored.

-- name: create_api_key
-- A new key. A duplicate name or (rarely) prefix raises UniqueViolation, which KeyStore turns
-- into a clear error or a new prefix.
INSERT INTO api_keys (name, prefix, key_hash, scopes, queues, expires_at,
                      requests_per_s, requests_burst, jobs_per_s, jobs_burst)
VALUES (:name, :prefix, :key_hash, :scopes::text[], :queues::text[], :expires_at,
        :requests_per_s, :requests_burst, :jobs_per_s, :jobs_burst)
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
WHERE prefix = :prefix;

-- name: lock_api_key
-- The key whose name or prefix is :name_or_prefix, locked until the transaction ends: what a
-- revoke or a change of limits over HTTP checks the caller's power against before it acts
-- (KeyStore.revoke, KeyStore.set_limits), so no other change of the key slips in between.
SELECT name, prefix, scopes, queues, expires_at, created_at, last_used_at, revoked_at,
       requests_per_s, requests_burst, jobs_per_s, jobs_burst
FROM api_keys
WHERE name = :name_or_prefix OR prefix = :name_or_prefix
FOR UPDATE;

-- name: revoke_api_key
-- Revoke the key whose name or prefix is :name_or_prefix (names cannot look like a prefix).
-- Revoking a revoked key keeps its first revocation time, so repeating the command is harmless.
UPDATE api_keys
SET revoked_at = coalesce(revoked_at, now())
WHERE name = :name_or_prefix OR prefix = :name_or_prefix
RETURNING name, prefix, scopes, queues, expires_at, created_at, last_used_at, revoked_at,
          requests_per_s, requests_burst, jobs_per_s, jobs_burst;

-- name: mark_api_keys_used
-- Write-behind of last_used_at for the keys :prefixes, at the instants :used_at (the API batches
-- them, at most one per key per minute). GREATEST: an older flush arriving late never moves it
-- back.
UPDATE api_keys AS k
SET last_used_at = GREATEST(k.last_used_at, used.at)
FROM unnest(:prefixes::text[], :used_at::timestamptz[]) AS used (prefix, at)
WHERE k.prefix = used.prefix;

-- name: set_api_key_limits
-- Replace the rate limits of the key whose name or prefix is :name_or_prefix (NULL: no such
-- limit).
-- Its buckets start full again: one emptied at the old rate would keep the key waiting as long
-- as the old rate said (days, at one a day), whatever the new one.
WITH changed AS (
    UPDATE api_keys
    SET requests_per_s = :requests_per_s, requests_burst = :requests_burst,
        jobs_per_s = :jobs_per_s, jobs_burst = :jobs_burst
    WHERE name = :name_or_prefix OR prefix = :name_or_prefix
    RETURNING name, prefix, scopes, queues, expires_at, created_at, last_used_at, revoked_at,
              requests_per_s, requests_burst, jobs_per_s, jobs_burst
), refilled AS (
    UPDATE api_key_rate_buckets AS b SET tat = '-infinity' FROM changed AS c
    WHERE b.prefix = c.prefix
)
SELECT * FROM changed;

-- name: take_rate_tokens
-- Take up to :want tokens from the bucket of key :prefix for limit :kind ('requests' or 'jobs'),
-- which refills at :per_s tokens a second and holds at most :burst: the generic cell rate
-- algorithm, whose state is one instant, tat. The bucket is full when tat <= now and empty when
-- tat = now + burst / rate; each token moves tat on by 1 / rate. The grant is written twice
-- (granted, and tat's step) because SET sees only the old row, and RETURNING only the new one.
-- The row lock serialises the replicas. Returns no row if the bucket does not exist yet
-- (ensure_rate_bucket makes it), else what was granted and, if fewer than :need tokens were,
-- the seconds until the missing ones will have refilled. 1e-9 absorbs floating-point error.
UPDATE api_key_rate_buckets AS b
SET granted = least(:want::int, greatest(0, floor(
        :burst::float8 - extract(epoch FROM greatest(b.tat, t.now) - t.now) * :per_s::float8
        + 1e-9
    )))::int,
    tat = greatest(b.tat, t.now) + make_interval(secs => least(:want::int, greatest(0, floor(
        :burst::float8 - extract(epoch FROM greatest(b.tat, t.now) - t.now) * :per_s::float8
        + 1e-9
    ))) / :per_s::float8)
FROM (SELECT clock_timestamp() AS now) AS t
WHERE b.prefix = :prefix AND b.kind = :kind
RETURNING b.granted,
          greatest(0, extract(epoch FROM b.tat - t.now)
                      + (:need::int - b.granted - :burst::float8) / :per_s::float8)::float8
              AS wait_s;

-- name: ensure_rate_bucket
-- A full bucket for key :prefix and limit :kind, unless it exists (or the key does not: then the
-- foreign key fails, and the key was deleted meanwhile).
INSERT INTO api_key_rate_buckets (prefix, kind, tat)
VALUES (:prefix, :kind, '-infinity')
ON CONFLICT (prefix, kind) DO NOTHING;

-- name: sign_out_console_session
-- A web console session signed out before its expiry :expires_at: its nonce is refused until
-- then. The rows whose expiry has passed go at the same time (they refuse nothing any more),
-- an hour late: the expiry is the API's clock, which need not agree with the database's.
WITH pruned AS (
    DELETE FROM console_sign_outs WHERE expires_at < now() - interval '1 hour'
)
INSERT INTO console_sign_outs (nonce, expires_at)
VALUES (:nonce, :expires_at)
ON CONFLICT (nonce) DO NOTHING;

-- name: console_session_signed_out
-- Whether the console session :nonce was signed out.
SELECT EXISTS (SELECT FROM console_sign_outs WHERE nonce = :nonce);
