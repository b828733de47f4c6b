"""Per-job timeouts and cancellation requests for running jobs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

Both columns are nullable without defaults: adding them is a catalog-only change, instant on a
table of any size, and old workers (which never read them) keep working during a rollout.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("timeout_s", sa.Float(), nullable=True))
    op.add_column(
        "jobs", sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_check_constraint(
        op.f("ck_jobs_timeout_positive"), "jobs", "timeout_s IS NULL OR timeout_s > 0"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_jobs_timeout_positive"), "jobs", type_="check")
    op.drop_column("jobs", "cancel_requested_at")
    op.drop_column("jobs", "timeout_s")
