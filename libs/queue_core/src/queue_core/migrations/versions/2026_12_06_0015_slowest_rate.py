"""Rate limits are at least one a day, for concurrency keys and API keys alike.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06

Both checks only asked for a rate above 0. A key's bucket moves its instant (``tat``) on by
``1 / rate`` a start: at 1e-300 a second one start put it past the range of a timestamp, and
every claim of the key's queues failed (``claim_keyed``), plain jobs included; an API key set
as slow made every request with it fail. A rate below the floor is raised to it, the buckets
of concurrency keys are brought back to at most one burst ahead at their rate, and the API
keys' buckets (UNLOGGED, rebuilt full on demand) are emptied, so that no instant set by a rate
now refused keeps a key waiting.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out: a revision must not change with the code. 1 / 86400 as Python prints it, which
# PostgreSQL reads back as the same float8.
MIN_RATE = "1.1574074074074073e-05"
MAX_CONCURRENCY_LIMIT = 10_000
MAX_KEY_RATE_PER_S = 10_000
MAX_KEY_RATE_BURST = 10_000
MAX_API_RATE = 1_000_000
MAX_API_BURST = 1_000_000


def _concurrency_keys_check(min_rate: str) -> str:
    return (
        f"(concurrency_limit IS NULL OR concurrency_limit BETWEEN 1 AND "
        f"{MAX_CONCURRENCY_LIMIT}) AND (rate_per_s IS NULL OR rate_per_s {min_rate} AND "
        f"rate_per_s <= {MAX_KEY_RATE_PER_S}) AND (rate_burst IS NULL OR rate_burst "
        f"BETWEEN 1 AND {MAX_KEY_RATE_BURST})"
    )


def _api_keys_check(min_rate: str) -> str:
    return (
        f"(requests_per_s IS NULL OR requests_per_s {min_rate} AND "
        f"requests_per_s <= {MAX_API_RATE}) AND (jobs_per_s IS NULL OR jobs_per_s {min_rate} "
        f"AND jobs_per_s <= {MAX_API_RATE}) "
        f"AND (requests_burst IS NULL OR requests_burst BETWEEN 1 AND {MAX_API_BURST}) "
        f"AND (jobs_burst IS NULL OR jobs_burst BETWEEN 1 AND {MAX_API_BURST})"
    )


def _replace_checks(min_rate: str) -> None:
    for table, check in (
        ("concurrency_keys", _concurrency_keys_check(min_rate)),
        ("api_keys", _api_keys_check(min_rate)),
    ):
        name = op.f(f"ck_{table}_limits_bounded")
        op.drop_constraint(name, table, type_="check")
        op.create_check_constraint(name, table, check)


def upgrade() -> None:
    op.execute(
        f"UPDATE concurrency_keys SET rate_per_s = {MIN_RATE}, updated_at = now()"
        f" WHERE rate_per_s < {MIN_RATE}"
    )
    op.execute(
        "UPDATE concurrency_keys"
        " SET tat = now() + make_interval(secs => rate_burst / rate_per_s), updated_at = now()"
        " WHERE tat > now() + make_interval(secs => rate_burst / rate_per_s)"
    )
    op.execute(
        # Not greatest(): it would give a key without a rate the floor as its rate.
        f"UPDATE api_keys SET requests_per_s = CASE WHEN requests_per_s < {MIN_RATE}"
        f" THEN {MIN_RATE} ELSE requests_per_s END, jobs_per_s = CASE WHEN jobs_per_s"
        f" < {MIN_RATE} THEN {MIN_RATE} ELSE jobs_per_s END"
        f" WHERE requests_per_s < {MIN_RATE} OR jobs_per_s < {MIN_RATE}"
    )
    op.execute("DELETE FROM api_key_rate_buckets")
    _replace_checks(f">= {MIN_RATE}")


def downgrade() -> None:
    _replace_checks("> 0")
