"""A job's dependency edges go with it: the roles may delete from ``job_dependencies``.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05

``job_dependencies`` has no foreign key to ``jobs`` (0012: its triggers cost every update of
every job), so nothing removed a job's edges when retention or ``DELETE /v1/jobs/{id}`` deleted
the job: the table grew with every dependant ever deleted. The statements that delete jobs
(``delete_finished_batch``, ``delete_finished``) now delete the deleted jobs' own edges (where
the job is the dependant) in the same statement, which takes DELETE for the workers' role
(retention) and the API's (``DELETE /v1/jobs/{id}``). An edge naming a deleted job as the
parent stays with its dependant until that goes too (its parent had finished: the edge is
settled, and ``GET /v1/jobs/{id}`` shows the parent as gone).

The upgrade also deletes the edges of jobs deleted before it, in one pass.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES = ("task_queue_api", "task_queue_worker")  # spelled out: see 0006

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
    op.execute(
        "DELETE FROM job_dependencies AS e WHERE NOT EXISTS (SELECT FROM jobs AS j "
        "WHERE j.id = e.job_id)"
    )
    for role in ROLES:
        op.execute(
            IF_ROLE_EXISTS.format(
                role=role, statement=f"GRANT DELETE ON job_dependencies TO {role}"
            )
        )


def downgrade() -> None:
    for role in ROLES:
        op.execute(
            IF_ROLE_EXISTS.format(
                role=role, statement=f"REVOKE DELETE ON job_dependencies FROM {role}"
            )
        )
