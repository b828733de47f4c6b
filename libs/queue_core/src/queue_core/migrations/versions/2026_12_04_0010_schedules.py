"""Periodic jobs: the ``schedules`` table, and workers may insert the jobs of its ticks.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04

``schedules`` has one row per schedule declared with a handler (``@task(..., cron=...)`` or
``every_s=``): its definition as the workers declared it (upserted at each worker's start), its
state (``paused_at``; ``last_tick_at``, the latest tick dealt with, run or skipped;
``last_run_at``/``last_job_id``, the latest tick that made a job). ``last_tick_at`` is the
watermark that makes each tick enqueue at most one job: a worker enqueues tick T only in the
statement that moves it from before T to T (see ``sql/schedules.sql``). Each tick's job also
carries the unique key ``schedule:<name>:<tick>``.

Grants: the API's group role reads schedules and pauses or resumes them (UPDATE); the worker's
registers them (INSERT, UPDATE) and, new in this revision, INSERTs into ``jobs``: the ticks'
jobs are made by the workers, since no API request is there when a tick comes due.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

API_ROLE = "task_queue_api"  # spelled out, as in 0006: a revision must not change with the code
WORKER_ROLE = "task_queue_worker"

TABLE_GRANTS = (
    (API_ROLE, "schedules", "SELECT, UPDATE"),
    (WORKER_ROLE, "schedules", "SELECT, INSERT, UPDATE"),
    (WORKER_ROLE, "jobs", "INSERT"),
)

IF_ROLE_EXISTS = """
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
        {statement};
    END IF;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("queue", sa.String(length=255), nullable=False),
        sa.Column("cron", sa.Text(), nullable=True),
        sa.Column("every_s", sa.Float(), nullable=True),
        sa.Column("tz", sa.Text(), nullable=False),
        sa.Column("missed", sa.Text(), nullable=False),
        sa.Column("grace_s", sa.Float(), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_tick_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_job_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "(cron IS NULL) <> (every_s IS NULL)", name=op.f("ck_schedules_cron_or_every")
        ),
        sa.CheckConstraint("missed IN ('once', 'skip')", name=op.f("ck_schedules_missed")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_schedules")),
    )
    op.execute("REVOKE ALL ON TABLE schedules FROM PUBLIC")
    for role, table, privileges in TABLE_GRANTS:
        op.execute(
            IF_ROLE_EXISTS.format(
                role=role, statement=f"GRANT {privileges} ON TABLE {table} TO {role}"
            )
        )


def downgrade() -> None:
    op.execute(
        IF_ROLE_EXISTS.format(
            role=WORKER_ROLE, statement=f"REVOKE INSERT ON TABLE jobs FROM {WORKER_ROLE}"
        )
    )
    op.drop_table("schedules")
