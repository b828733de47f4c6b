"""Limits per key (concurrency and rate, across the fleet) and jobs that wait for other jobs.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04

- ``jobs.concurrency_key``: the job's limit group (NULL: none). ``concurrency_keys`` holds one
  row per key: its limits (the latest enqueue's) and the rate limit's GCRA state (``tat``).
  Its row lock is what a claimer holds to start the key's jobs; the key's running jobs are
  counted (``ix_jobs_running_keyed``), never kept in a counter, so finishing a job changes no
  key row. Logged: ``tat`` should survive a crash.
- ``jobs.waiting_for``: how many of the job's dependencies have not completed; ``job_dependencies``
  holds the edges (``satisfied`` once the parent completed: what makes settling idempotent).
  ``jobs.dependants_unsettled``: the job has dependants not yet told of its outcome; the
  statements that finish a job return it, and the sweep finds finished jobs still carrying it.
- ``ix_jobs_claimable`` is rebuilt without keyed and waiting jobs (the plain claim never walks
  past them), and ``ix_jobs_claimable_keyed`` indexes the keyed ones for the claim's keyed
  branch (which keys have due jobs), ``ix_jobs_claimable_by_key`` each key's due jobs,
  ``ix_jobs_running_keyed`` each key's running jobs, ``ix_jobs_waiting`` the jobs waiting for
  dependencies (for queue_stats). All are partial: a plain job enters none of them. All are
  built CONCURRENTLY, the new claim index before the old one is dropped, so claims always have
  an index. ``ix_jobs_dependants_unsettled`` serves the sweep (a handful of rows).

The new columns have constant defaults: adding them rewrites no row.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

API_ROLE = "task_queue_api"  # spelled out, as in 0006: a revision must not change with the code
WORKER_ROLE = "task_queue_worker"
MAX_CONCURRENCY_LIMIT = 10_000
MAX_KEY_RATE_PER_S = 10_000
MAX_KEY_RATE_BURST = 10_000

TABLE_GRANTS = (
    (API_ROLE, "concurrency_keys", "SELECT, INSERT, UPDATE"),
    (API_ROLE, "job_dependencies", "SELECT, INSERT, UPDATE"),
    (WORKER_ROLE, "concurrency_keys", "SELECT, INSERT, UPDATE"),
    (WORKER_ROLE, "job_dependencies", "SELECT, INSERT, UPDATE"),
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

CLAIMABLE_COLUMNS = "queue, priority DESC, coalesce(scheduled_at, created_at)"
PLAIN_PREDICATE = "status = 'pending' AND concurrency_key IS NULL AND waiting_for = 0"
KEYED_PREDICATE = "status = 'pending' AND concurrency_key IS NOT NULL AND waiting_for = 0"
# The keyed claim's: each key's due jobs by priority, and each key's running jobs.
KEYED_INDEXES = (
    (
        "ix_jobs_claimable_by_key",
        "concurrency_key, priority DESC, coalesce(scheduled_at, created_at)",
        KEYED_PREDICATE,
    ),
    (
        "ix_jobs_running_keyed",
        "concurrency_key",
        "status = 'running' AND concurrency_key IS NOT NULL",
    ),
)
UNSETTLED_PREDICATE = "dependants_unsettled AND status IN ('completed', 'failed', 'cancelled')"


def upgrade() -> None:
    op.add_column("jobs", sa.Column("concurrency_key", sa.String(length=255), nullable=True))
    op.add_column(
        "jobs", sa.Column("waiting_for", sa.Integer(), server_default=sa.text("0"), nullable=False)
    )
    op.add_column(
        "jobs",
        sa.Column(
            "dependants_unsettled", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
    )
    # NOT VALID, then VALIDATE: no lock held while the whole table is read.
    op.execute(
        "ALTER TABLE jobs ADD CONSTRAINT ck_jobs_waiting_for_non_negative "
        "CHECK (waiting_for >= 0) NOT VALID"
    )
    op.execute("ALTER TABLE jobs VALIDATE CONSTRAINT ck_jobs_waiting_for_non_negative")
    op.create_table(
        "concurrency_keys",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("concurrency_limit", sa.Integer(), nullable=True),
        sa.Column("rate_per_s", sa.Float(), nullable=True),
        sa.Column("rate_burst", sa.Integer(), nullable=True),
        sa.Column("tat", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            f"(concurrency_limit IS NULL OR concurrency_limit BETWEEN 1 AND "
            f"{MAX_CONCURRENCY_LIMIT}) AND (rate_per_s IS NULL OR rate_per_s > 0 AND "
            f"rate_per_s <= {MAX_KEY_RATE_PER_S}) AND (rate_burst IS NULL OR rate_burst "
            f"BETWEEN 1 AND {MAX_KEY_RATE_BURST})",
            name=op.f("ck_concurrency_keys_limits_bounded"),
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_concurrency_keys")),
    )
    op.create_table(
        "job_dependencies",
        sa.Column("job_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("depends_on", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("satisfied", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "depends_on", name=op.f("pk_job_dependencies")),
    )
    op.create_index(
        op.f("ix_job_dependencies_depends_on"), "job_dependencies", ["depends_on"], unique=False
    )
    op.execute("REVOKE ALL ON TABLE concurrency_keys, job_dependencies FROM PUBLIC")
    for role, table, privileges in TABLE_GRANTS:
        op.execute(
            IF_ROLE_EXISTS.format(
                role=role, statement=f"GRANT {privileges} ON TABLE {table} TO {role}"
            )
        )
    with op.get_context().autocommit_block():
        for name, columns, predicate in KEYED_INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")  # an INVALID leftover
            op.execute(f"CREATE INDEX CONCURRENTLY {name} ON jobs ({columns}) WHERE {predicate}")
        for name in ("ix_jobs_claimable_plain", "ix_jobs_claimable_keyed"):
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")  # an INVALID leftover
        op.execute(
            "CREATE INDEX CONCURRENTLY ix_jobs_claimable_plain "
            f"ON jobs ({CLAIMABLE_COLUMNS}) WHERE {PLAIN_PREDICATE}"
        )
        op.execute(
            "CREATE INDEX CONCURRENTLY ix_jobs_claimable_keyed "
            f"ON jobs ({CLAIMABLE_COLUMNS}) WHERE {KEYED_PREDICATE}"
        )
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_jobs_waiting")
        op.execute(
            "CREATE INDEX CONCURRENTLY ix_jobs_waiting ON jobs (queue) "
            "WHERE status = 'pending' AND waiting_for > 0"
        )
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_jobs_dependants_unsettled")
        op.execute(
            "CREATE INDEX CONCURRENTLY ix_jobs_dependants_unsettled "
            f"ON jobs (id) WHERE {UNSETTLED_PREDICATE}"
        )
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_jobs_claimable")
        op.execute("ALTER INDEX ix_jobs_claimable_plain RENAME TO ix_jobs_claimable")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_jobs_claimable_all")
        op.execute(
            "CREATE INDEX CONCURRENTLY ix_jobs_claimable_all "
            f"ON jobs ({CLAIMABLE_COLUMNS}) WHERE status = 'pending'"
        )
        for name in (
            "ix_jobs_claimable",
            "ix_jobs_claimable_keyed",
            "ix_jobs_claimable_by_key",
            "ix_jobs_running_keyed",
            "ix_jobs_waiting",
            "ix_jobs_dependants_unsettled",
        ):
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        op.execute("ALTER INDEX ix_jobs_claimable_all RENAME TO ix_jobs_claimable")
    op.drop_table("job_dependencies")
    op.drop_table("concurrency_keys")
    op.drop_constraint(op.f("ck_jobs_waiting_for_non_negative"), "jobs", type_="check")
    op.drop_column("jobs", "dependants_unsettled")
    op.drop_column("jobs", "waiting_for")
    op.drop_column("jobs", "concurrency_key")
