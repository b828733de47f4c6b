"""Database roles: least privilege for the API and the worker.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

Two group roles (NOLOGIN) hold the privileges; operators create login roles in them:
``CREATE ROLE queue_api LOGIN PASSWORD '…' IN ROLE task_queue_api;``

- ``task_queue_api``: reads and writes jobs (enqueue, status, cancel, retry, metrics) and API
  keys (create, find, revoke, mark used: no DELETE), and is a member of ``pg_read_all_stats``
  so that ``oldest_transaction_age`` sees other roles' transactions in ``pg_stat_activity``.
- ``task_queue_worker``: SELECT and UPDATE on jobs, nothing else. Every statement the worker
  runs (claim, heartbeat, finish, rescue_expired, notify_queues, ping, LISTEN) only reads and
  updates rows; ``FOR UPDATE`` needs UPDATE, and pg_notify and LISTEN need no grant.

Neither may DROP, ALTER or TRUNCATE a table, or create one (PostgreSQL 15 and later no longer
let PUBLIC create in the public schema): that stays with the migrating role, the owner.

Roles belong to the cluster, not to this database: they are created only when missing, and a
migrate in another database creating them at the same moment is tolerated (the advisory lock
of env.py serialises migrates of one database only). A migrating role that may not create roles
(neither superuser nor CREATEROLE) skips that with a NOTICE and grants to whichever roles
exist, so an operator can create them first. The downgrade revokes this database's grants but
drops no role and keeps the ``pg_read_all_stats`` membership: other databases may use them.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here, not imported: a revision must not change when the code does.
API_ROLE = "task_queue_api"
WORKER_ROLE = "task_queue_worker"

# (role, table, privileges) that upgrade grants and downgrade revokes.
TABLE_GRANTS = (
    (API_ROLE, "jobs", "SELECT, INSERT, UPDATE, DELETE"),
    (API_ROLE, "api_keys", "SELECT, INSERT, UPDATE"),
    (WORKER_ROLE, "jobs", "SELECT, UPDATE"),
)

# Create a missing group role when allowed to. Two transactions creating the same role at once:
# the later one fails with duplicate_object if it saw the committed role, or unique_violation on
# pg_authid's index if it waited for the other to commit. Either way the role now exists.
CREATE_ROLE = """
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
        RETURN;
    END IF;
    IF NOT EXISTS (
        SELECT FROM pg_roles WHERE rolname = current_user AND (rolsuper OR rolcreaterole)
    ) THEN
        RAISE NOTICE 'role {role} not created: % may not create roles', current_user;
        RETURN;
    END IF;
    BEGIN
        CREATE ROLE {role} NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;  -- created meanwhile by a migrate of another database
    END;
END
$$
"""

# Run a statement only if the role exists (it may not: see CREATE_ROLE).
IF_ROLE_EXISTS = """
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
        EXECUTE format('{statement}', current_schema());
    END IF;
END
$$
"""

# pg_stat_activity shows another role's xact_start only to members of pg_read_all_stats, and
# only a superuser may grant that membership. It is cluster-wide: concurrent grants from two
# databases may collide on pg_auth_members' index, and the later one's work is already done.
GRANT_READ_ALL_STATS = f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{API_ROLE}')
       OR pg_has_role('{API_ROLE}', 'pg_read_all_stats', 'MEMBER') THEN
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = current_user AND rolsuper) THEN
        RAISE NOTICE '{API_ROLE} not made a member of pg_read_all_stats: % is not superuser',
            current_user;
        RETURN;
    END IF;
    BEGIN
        GRANT pg_read_all_stats TO {API_ROLE};
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;  -- granted meanwhile by a migrate of another database
    END;
END
$$
"""


def _if_role_exists(role: str, statement: str) -> str:
    # The schema is the one the migration runs in: format()'s %I quotes it.
    return IF_ROLE_EXISTS.format(role=role, statement=statement.replace("'", "''"))


def upgrade() -> None:
    for role in (API_ROLE, WORKER_ROLE):
        op.execute(CREATE_ROLE.format(role=role))
    # No table of ours is PUBLIC's: every privilege goes through one of the roles.
    op.execute("REVOKE ALL ON TABLE jobs, api_keys FROM PUBLIC")
    for role in (API_ROLE, WORKER_ROLE):
        op.execute(_if_role_exists(role, f"GRANT USAGE ON SCHEMA %I TO {role}"))
    for role, table, privileges in TABLE_GRANTS:
        op.execute(_if_role_exists(role, f"GRANT {privileges} ON TABLE {table} TO {role}"))
    op.execute(GRANT_READ_ALL_STATS)


def downgrade() -> None:
    for role, table, privileges in TABLE_GRANTS:
        op.execute(_if_role_exists(role, f"REVOKE {privileges} ON TABLE {table} FROM {role}"))
    for role in (API_ROLE, WORKER_ROLE):
        op.execute(_if_role_exists(role, f"REVOKE USAGE ON SCHEMA %I FROM {role}"))
