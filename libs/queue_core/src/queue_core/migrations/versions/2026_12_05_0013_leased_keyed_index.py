"""The keyed claim in one statement: each key's running jobs by lease, and no per-key due index.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05

- ``ix_jobs_running_keyed`` is rebuilt over leased keyed jobs (``lease_owner IS NOT NULL``)
  instead of running ones. ``claim_keyed`` counts each key's running jobs per key; under
  0012's predicate (``status = 'running' AND concurrency_key IS NOT NULL``) that count could
  also be served by ``ix_jobs_running_lease`` (``WHERE status = 'running'``), and with the
  statistics of a table analyzed while nothing ran (a backlog enqueued before the workers
  started) both looked empty: the planner took the smaller, reading every running job for
  each key (70 ms a claim of 500). A count by lease no other index can serve. Every running
  job has a lease (ck_jobs_running_has_lease) and only the claim gives one, so the count is
  the running jobs'.
- ``ix_jobs_claimable_by_key`` is dropped: ``claim_keyed`` takes each key's jobs from the
  candidates of its scan of ``ix_jobs_claimable_keyed`` and no longer looks a key's due jobs
  up; the index only cost every keyed enqueue an entry.

Both built and dropped CONCURRENTLY; the new index under a new name, renamed once the old one
is gone, so the claim always has one.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUNNING = "ix_jobs_running_keyed"
BUILDING = "ix_jobs_running_keyed_new"
LEASED_PREDICATE = "lease_owner IS NOT NULL AND concurrency_key IS NOT NULL"
# 0012's, spelled out: a revision must not change with the code.
RUNNING_PREDICATE = "status = 'running' AND concurrency_key IS NOT NULL"
BY_KEY = "ix_jobs_claimable_by_key"
BY_KEY_COLUMNS = "concurrency_key, priority DESC, coalesce(scheduled_at, created_at)"
BY_KEY_PREDICATE = "status = 'pending' AND concurrency_key IS NOT NULL AND waiting_for = 0"


def _rebuild_running(predicate: str) -> None:
    op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {BUILDING}")  # an INVALID leftover
    op.execute(f"CREATE INDEX CONCURRENTLY {BUILDING} ON jobs (concurrency_key) WHERE {predicate}")
    op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {RUNNING}")
    op.execute(f"ALTER INDEX {BUILDING} RENAME TO {RUNNING}")


def upgrade() -> None:
    with op.get_context().autocommit_block():
        _rebuild_running(LEASED_PREDICATE)
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {BY_KEY}")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {BY_KEY}")  # an INVALID leftover
        op.execute(
            f"CREATE INDEX CONCURRENTLY {BY_KEY} ON jobs ({BY_KEY_COLUMNS}) "
            f"WHERE {BY_KEY_PREDICATE}"
        )
        _rebuild_running(RUNNING_PREDICATE)
