"""Retention: the worker's role may delete jobs.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04

Retention runs as a worker service (``queue_worker.retention``), deleting finished jobs past
their age in small batches, so ``task_queue_worker`` needs DELETE on ``jobs``. It adds little
power: the role could already UPDATE any job (finish it, fail it), and it still may not read API
keys or change the schema. A narrower grant (a SECURITY DEFINER function that deletes only
finished rows) would move the retention's SQL out of ``queue_core`` into a revision, where
every change to it would need another revision.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WORKER_ROLE = "task_queue_worker"  # spelled out, as in 0006: a revision must not change

IF_ROLE_EXISTS = f"""
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{WORKER_ROLE}') THEN
        {{statement}};
    END IF;
END
$$
"""


def upgrade() -> None:
    op.execute(IF_ROLE_EXISTS.format(statement=f"GRANT DELETE ON TABLE jobs TO {WORKER_ROLE}"))


def downgrade() -> None:
    op.execute(IF_ROLE_EXISTS.format(statement=f"REVOKE DELETE ON TABLE jobs FROM {WORKER_ROLE}"))
