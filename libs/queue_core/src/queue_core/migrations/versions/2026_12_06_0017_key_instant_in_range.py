"""A concurrency key's rate instant (``tat``) is a finite timestamp, as the jobs' are.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06

Nothing bounded ``concurrency_keys.tat``. A row given ``infinity`` or ``-infinity`` by hand made
``claim_keyed`` raise on PostgreSQL 16 and older ("cannot subtract infinite timestamps", from
``tat - now()``): every claim of the queues it runs for failed, plain jobs included. The claim
never writes such a value (a start moves ``tat`` on by at most a burst at the slowest rate, 27
years), so the range is the jobs' (``ck_jobs_timestamps_in_range``): from 1970 to before 2200.
A row outside it gets no instant (a full bucket, as a new key has) before the check is added.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out: a revision must not change with the code.
IN_RANGE = (
    "tat >= '1970-01-01T00:00:00+00:00'::timestamptz"
    " AND tat < '2200-01-01T00:00:00+00:00'::timestamptz"
)


def upgrade() -> None:
    op.execute(
        f"UPDATE concurrency_keys SET tat = NULL, updated_at = now()"
        f" WHERE tat IS NOT NULL AND NOT ({IN_RANGE})"
    )
    op.create_check_constraint(
        op.f("ck_concurrency_keys_tat_in_range"), "concurrency_keys", f"tat IS NULL OR ({IN_RANGE})"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_concurrency_keys_tat_in_range"), "concurrency_keys", type_="check")
