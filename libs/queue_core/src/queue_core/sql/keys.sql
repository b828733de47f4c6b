-- API keys, one named statement each. queue_core.keys.KeyStore is the only caller. A key is
-- found by its prefix (stored in clear, unique) and checked against key_hash, the SHA-256 of
-- the whole key: the secret itself is never stored.

-- name: create_api_key
-- A new key. A duplicate name or (rarely) prefix raises UniqueViolation, which KeyStore turns
-- into a clear error or a new prefix.
INSERT INTO api_keys (name, prefix, key_hash, scopes, queues, expires_at)
VALUES ($1, $2, $3, $4::text[], $5::text[], $6)
RETURNING name, prefix, scopes, queues, expires_at, created_at, last_used_at, revoked_at,
          requests_per_s, jobs_per_s, burst;

-- name: list_api_keys
-- Every key, newest first, without its hash.
SELECT name, prefix, scopes, queues, expires_at, created_at, last_used_at, revoked_at,
       requests_per_s, jobs_per_s, burst
FROM api_keys
ORDER BY created_at DESC, name;

-- name: find_api_key
-- What the API checks a presented key against, by the unique prefix.
SELECT name, prefix, key_hash, scopes, queues, expires_at, created_at, last_used_at, revoked_at,
       requests_per_s, jobs_per_s, burst
FROM api_keys
WHERE prefix = $1;

-- name: revoke_api_key
-- Revoke the key named $1, or whose prefix is $1 (names cannot look like a prefix). Revoking a
-- revoked key keeps its first revocation time, so repeating the command is harmless.
UPDATE api_keys
SET revoked_at = coalesce(revoked_at, now())
WHERE name = $1 OR prefix = $1
RETURNING name, prefix, scopes, queues, expires_at, created_at, last_used_at, revoked_at,
          requests_per_s, jobs_per_s, burst;

-- name: mark_api_keys_used
-- Write-behind of last_used_at for the keys in $1, at the instants in $2 (the API batches them,
-- at most one per key per minute). GREATEST: an older flush arriving late never moves it back.
UPDATE api_keys AS k
SET last_used_at = GREATEST(k.last_used_at, used.at)
FROM unnest($1::text[], $2::timestamptz[]) AS used (prefix, at)
WHERE k.prefix = used.prefix;
