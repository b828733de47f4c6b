"""Bound the values a job row may hold, after repairing the rows outside the bounds.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

Before this revision the API stored ``scheduled_at`` as ``-infinity`` or ``infinity`` when a
client sent year 1 or year 9999 (asyncpg's encoding of Python's ``datetime.min``/``max``). A
``-infinity`` row failed every claim of its queue on PostgreSQL before 17, and the API's
``/metrics`` with it; an ``infinity`` row never ran; a timestamp outside Python's years 1-9999
made reading the job fail. The bounds are those of ``queue_core.limits``. The rows outside them
are repaired first, each into a state that says what happened:

- ``scheduled_at`` before 1970, ``-infinity`` included: cleared (NULL, "as soon as possible",
  which is what an instant in the past means for a job that has not run).
- ``scheduled_at`` in 2200 or later, ``infinity`` included: a pending job is failed with an
  error that says why (it could never have run); any other keeps its status and loses the value.
- Any other timestamp out of range (all are written by the database's clock, so only a hand
  edit puts one there): now. An expired lease is then rescued as usual.
- ``timeout_s`` NaN, infinite or above a week: cleared (the handler's or worker's timeout).
- A pending job with no attempts left (only a hand edit makes one; the claim would push its
  count past ``max_attempts``, or past the integer range): failed, with an error that says why.

The constraints are added ``NOT VALID`` (a brief lock, no scan) and validated in a transaction of
their own, which scans the table under a lock that lets jobs be inserted, claimed and finished
meanwhile. A downgrade drops them and restores 0002's timeout constraint; repaired rows stay
repaired.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The values of queue_core.limits when this revision was written, spelled out: a revision must
# not change when the code does (tests/core/test_job_bounds.py checks that they agree).
MIN = "'1970-01-01T00:00:00+00:00'::timestamptz"
MAX = "'2200-01-01T00:00:00+00:00'::timestamptz"
TIMEOUT_OK = "timeout_s > 0 AND timeout_s <= 604800"
TIMESTAMP_COLUMNS = (
    "scheduled_at",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "lease_expires_at",
    "cancel_requested_at",
)

CONSTRAINTS = {
    "ck_jobs_timeout_in_range": f"timeout_s IS NULL OR ({TIMEOUT_OK})",
    "ck_jobs_timestamps_in_range": " AND ".join(
        f"({column} IS NULL OR ({column} >= {MIN} AND {column} < {MAX}))"
        for column in TIMESTAMP_COLUMNS
    ),
    "ck_jobs_pending_has_attempts_left": "status <> 'pending' OR attempts < max_attempts",
}

NEVER_DUE = (
    "scheduled_at was beyond the range the queue accepts (before 2200-01-01): the job could "
    "never run, so the upgrade to schema 0004 failed it; retry it to run it now"
)
NO_ATTEMPTS_LEFT = (
    "pending with no attempts left (attempts >= max_attempts): the upgrade to schema 0004 "
    "failed it; retry it to run it again"
)


def _out_of_range(column: str) -> str:
    return f"({column} < {MIN} OR {column} >= {MAX})"


def upgrade() -> None:
    # Each repair reads the table once; on a table without such rows it changes nothing.
    op.execute(
        f"""
        UPDATE jobs
        SET status = 'failed', error_message = '{NEVER_DUE}', scheduled_at = NULL,
            finished_at = now(), updated_at = now()
        WHERE status = 'pending' AND scheduled_at >= {MAX}
        """
    )
    op.execute(
        f"""
        UPDATE jobs
        SET status = 'failed', error_message = '{NO_ATTEMPTS_LEFT}',
            finished_at = now(), updated_at = now()
        WHERE status = 'pending' AND attempts >= max_attempts
        """
    )
    repairs = ", ".join(
        f"{column} = CASE WHEN {_out_of_range(column)} THEN "
        f"{'NULL' if column == 'scheduled_at' else 'now()'} ELSE {column} END"
        for column in TIMESTAMP_COLUMNS
    )
    any_out = " OR ".join(_out_of_range(column) for column in TIMESTAMP_COLUMNS)
    op.execute(f"UPDATE jobs SET {repairs} WHERE {any_out}")
    op.execute(f"UPDATE jobs SET timeout_s = NULL WHERE NOT ({TIMEOUT_OK})")
    op.drop_constraint(op.f("ck_jobs_timeout_positive"), "jobs", type_="check")
    for name, condition in CONSTRAINTS.items():
        op.execute(f"ALTER TABLE jobs ADD CONSTRAINT {name} CHECK ({condition}) NOT VALID")
    # Commit what is above, so the scans below hold only SHARE UPDATE EXCLUSIVE, which lets
    # the queue keep working, instead of the ACCESS EXCLUSIVE lock that adding took.
    with op.get_context().autocommit_block():
        for name in CONSTRAINTS:
            op.execute(f"ALTER TABLE jobs VALIDATE CONSTRAINT {name}")


def downgrade() -> None:
    for name in CONSTRAINTS:
        op.drop_constraint(op.f(name), "jobs", type_="check")
    op.create_check_constraint(
        op.f("ck_jobs_timeout_positive"), "jobs", "timeout_s IS NULL OR timeout_s > 0"
    )
