"""API keys: who may call the API, and what they may do.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

A new table, so the revision is instant and expand-only: an API of the previous version ignores
it. ``key_hash`` is the SHA-256 of the whole key (``queue_core.keys``); the key itself is never
stored. The rate-limit columns are empty until the rate limiter reads them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The scopes when this revision was written, spelled out: a revision must not change when the
# code does. A new scope takes a revision that replaces this constraint.
SCOPES = ("jobs:write", "jobs:read", "jobs:admin", "queues:admin", "keys:admin", "metrics:read")


def upgrade() -> None:
    scopes = ", ".join(f"'{scope}'" for scope in SCOPES)
    op.create_table(
        "api_keys",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=11), nullable=False),
        sa.Column("key_hash", postgresql.BYTEA(), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("queues", postgresql.ARRAY(sa.Text()), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("requests_per_s", sa.Float(), nullable=True),
        sa.Column("jobs_per_s", sa.Float(), nullable=True),
        sa.Column("burst", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("name", name="uq_api_keys_name"),
        sa.UniqueConstraint("prefix", name="uq_api_keys_prefix"),
        sa.CheckConstraint("octet_length(key_hash) = 32", name="ck_api_keys_key_hash_is_sha256"),
        sa.CheckConstraint(
            f"cardinality(scopes) >= 1 AND scopes <@ ARRAY[{scopes}]::text[]",
            name="ck_api_keys_scopes_known",
        ),
        sa.CheckConstraint(
            "queues IS NULL OR cardinality(queues) >= 1", name="ck_api_keys_queues_not_empty"
        ),
        sa.CheckConstraint(
            "(requests_per_s IS NULL OR requests_per_s > 0) "
            "AND (jobs_per_s IS NULL OR jobs_per_s > 0) AND (burst IS NULL OR burst > 0)",
            name="ck_api_keys_limits_positive",
        ),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
