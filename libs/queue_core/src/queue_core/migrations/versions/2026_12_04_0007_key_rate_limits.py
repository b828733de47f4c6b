"""Rate limits per API key: a burst for each limit, and the shared buckets.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

Revision 0005 stored one ``burst`` for two limits counted in different units (requests, jobs):
it becomes ``requests_burst``, beside a new ``jobs_burst``. Limits get upper bounds, so that no
value can overflow the arithmetic of the bucket.

Revision 0005 also named its check constraints twice over (``ck_api_keys_ck_api_keys_…``: the
naming convention prefixed names that already carried the prefix); they get their intended
names here.

``api_key_rate_buckets`` holds one row per key and limit: the theoretical arrival time of the
generic cell rate algorithm (``queue_core.keys``), shared by every API replica. It is UNLOGGED:
it is rewritten on every refill, needs no WAL, and after a crash its rows are gone, which only
means every key starts with a full burst again. The API's group role may read and write it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

API_ROLE = "task_queue_api"  # spelled out, as in 0006: a revision must not change with the code
MAX_RATE = 1_000_000
MAX_BURST = 1_000_000

LIMITS_CHECK = (
    f"(requests_per_s IS NULL OR requests_per_s > 0 AND requests_per_s <= {MAX_RATE}) "
    f"AND (jobs_per_s IS NULL OR jobs_per_s > 0 AND jobs_per_s <= {MAX_RATE}) "
    f"AND (requests_burst IS NULL OR requests_burst BETWEEN 1 AND {MAX_BURST}) "
    f"AND (jobs_burst IS NULL OR jobs_burst BETWEEN 1 AND {MAX_BURST})"
)
OLD_LIMITS_CHECK = (
    "(requests_per_s IS NULL OR requests_per_s > 0) "
    "AND (jobs_per_s IS NULL OR jobs_per_s > 0) AND (burst IS NULL OR burst > 0)"
)

# Check constraints of 0005, by the name they were meant to have.
MISNAMED_CHECKS = ("key_hash_is_sha256", "scopes_known", "queues_not_empty")

GRANT_IF_ROLE_EXISTS = f"""
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{API_ROLE}') THEN
        {{statement}};
    END IF;
END
$$
"""


def _rename_checks(old: str, new: str) -> None:
    for name in MISNAMED_CHECKS:
        op.execute(f"ALTER TABLE api_keys RENAME CONSTRAINT {old}{name} TO {new}{name}")


def upgrade() -> None:
    _rename_checks("ck_api_keys_ck_api_keys_", "ck_api_keys_")
    op.drop_constraint(op.f("ck_api_keys_ck_api_keys_limits_positive"), "api_keys", type_="check")
    op.alter_column("api_keys", "burst", new_column_name="requests_burst")
    op.add_column("api_keys", sa.Column("jobs_burst", sa.Integer(), nullable=True))
    op.create_check_constraint(op.f("ck_api_keys_limits_bounded"), "api_keys", LIMITS_CHECK)
    op.create_table(
        "api_key_rate_buckets",
        sa.Column("prefix", sa.String(length=11), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("tat", sa.DateTime(timezone=True), nullable=False),
        sa.Column("granted", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("prefix", "kind", name=op.f("pk_api_key_rate_buckets")),
        sa.ForeignKeyConstraint(
            ["prefix"],
            ["api_keys.prefix"],
            name=op.f("fk_api_key_rate_buckets_prefix_api_keys"),
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            "kind IN ('requests', 'jobs')", name=op.f("ck_api_key_rate_buckets_kind")
        ),
        prefixes=["UNLOGGED"],
    )
    op.execute("REVOKE ALL ON TABLE api_key_rate_buckets FROM PUBLIC")
    op.execute(
        GRANT_IF_ROLE_EXISTS.format(
            statement=f"GRANT SELECT, INSERT, UPDATE ON TABLE api_key_rate_buckets TO {API_ROLE}"
        )
    )


def downgrade() -> None:
    op.drop_table("api_key_rate_buckets")
    op.drop_constraint(op.f("ck_api_keys_limits_bounded"), "api_keys", type_="check")
    op.drop_column("api_keys", "jobs_burst")
    op.alter_column("api_keys", "requests_burst", new_column_name="burst")
    op.create_check_constraint(
        op.f("ck_api_keys_ck_api_keys_limits_positive"), "api_keys", OLD_LIMITS_CHECK
    )
    _rename_checks("ck_api_keys_", "ck_api_keys_ck_api_keys_")
