"""The v1 job API: results, past errors, idempotency and unique keys, queues and workers.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04

On ``jobs``, new nullable columns (instant: no rewrite, no scan):

- ``result``: the handler's return value (JSON), stored with the completion.
- ``errors``: the errors of past attempts, a JSON array of ``{"attempt", "at", "error"}``,
  newest last, bounded by the statement that appends to it.
- ``idempotency_key``, ``idempotency_fingerprint``, ``idempotency_expires_at``: a client's
  ``Idempotency-Key`` (namespaced by the caller), a digest of the request it came with, and when
  the key may be used again. Unique while set.
- ``unique_key``, ``unique_until``: a job unique by key while it is pending or running
  (``unique_until`` NULL), or until an instant.

Both unique indexes are partial, over rows that have a key only, so jobs without keys cost them
nothing. They are built CONCURRENTLY, outside the migration's transaction, so that a big
``jobs`` table keeps taking writes meanwhile; a build that failed leaves an INVALID index,
which the next run drops and builds again.

New tables: ``queues`` (one row per queue that has been paused, with when) and ``workers``
(each live worker: what it serves and when it was last seen). The API's group role may read
both and pause queues; the worker's may read queues and register itself.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

API_ROLE = "task_queue_api"  # spelled out, as in 0006: a revision must not change with the code
WORKER_ROLE = "task_queue_worker"

# The partial unique indexes: name, column and predicate.
UNIQUE_INDEXES = (
    ("ix_jobs_idempotency_key", "idempotency_key", "idempotency_key IS NOT NULL"),
    (
        "ix_jobs_unique_key",
        "unique_key",
        (
            "unique_key IS NOT NULL"
            " AND (unique_until IS NOT NULL OR status IN ('pending', 'running'))"
        ),
    ),
)

TABLE_GRANTS = (
    (API_ROLE, "queues", "SELECT, INSERT, UPDATE"),
    (API_ROLE, "workers", "SELECT"),
    (WORKER_ROLE, "queues", "SELECT"),
    (WORKER_ROLE, "workers", "SELECT, INSERT, UPDATE, DELETE"),
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
    op.add_column("jobs", sa.Column("result", postgresql.JSONB(), nullable=True))
    op.add_column("jobs", sa.Column("errors", postgresql.JSONB(), nullable=True))
    op.add_column("jobs", sa.Column("idempotency_key", sa.Text(), nullable=True))
    op.add_column("jobs", sa.Column("idempotency_fingerprint", postgresql.BYTEA(), nullable=True))
    op.add_column(
        "jobs", sa.Column("idempotency_expires_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("jobs", sa.Column("unique_key", sa.Text(), nullable=True))
    op.add_column("jobs", sa.Column("unique_until", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint(
        op.f("ck_jobs_idempotency_complete"),
        "jobs",
        "idempotency_key IS NULL"
        " OR (idempotency_fingerprint IS NOT NULL AND idempotency_expires_at IS NOT NULL)",
    )
    op.create_table(
        "queues",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_queues")),
    )
    op.create_table(
        "workers",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("queues", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("task_types", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "last_seen_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )
    op.create_index(op.f("ix_workers_last_seen_at"), "workers", ["last_seen_at"])
    op.execute("REVOKE ALL ON TABLE queues, workers FROM PUBLIC")
    for role, table, privileges in TABLE_GRANTS:
        op.execute(
            IF_ROLE_EXISTS.format(
                role=role, statement=f"GRANT {privileges} ON TABLE {table} TO {role}"
            )
        )
    with op.get_context().autocommit_block():
        for name, column, predicate in UNIQUE_INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")  # an INVALID leftover
            op.execute(
                f"CREATE UNIQUE INDEX CONCURRENTLY {name} ON jobs ({column}) WHERE {predicate}"
            )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, _, _ in UNIQUE_INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    op.drop_table("workers")
    op.drop_table("queues")
    op.drop_constraint(op.f("ck_jobs_idempotency_complete"), "jobs", type_="check")
    for column in (
        "unique_until",
        "unique_key",
        "idempotency_expires_at",
        "idempotency_fingerprint",
        "idempotency_key",
        "errors",
        "result",
    ):
        op.drop_column("jobs", column)
