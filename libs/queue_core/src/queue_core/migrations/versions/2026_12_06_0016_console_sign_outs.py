"""Signing out of the web console ends the session, not only the browser's copy of it.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06

Console sessions are signed cookies with no server-side state: **Sign out** deleted the
browser's cookie, and a copy of it (a shared machine, a proxy's log) stayed good until it
expired, CSRF token included. ``console_sign_outs`` holds the nonce of each session signed out
before its expiry, until that expiry; every console request is refused if its session's nonce
is there. The API's role reads, adds and prunes rows.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

API_ROLE = "task_queue_api"  # spelled out, as in 0006: a revision must not change with the code

GRANT_IF_ROLE_EXISTS = f"""
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{API_ROLE}') THEN
        GRANT SELECT, INSERT, DELETE ON TABLE console_sign_outs TO {API_ROLE};
    END IF;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "console_sign_outs",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("nonce", name=op.f("pk_console_sign_outs")),
    )
    op.execute("REVOKE ALL ON TABLE console_sign_outs FROM PUBLIC")
    op.execute(GRANT_IF_ROLE_EXISTS)


def downgrade() -> None:
    op.drop_table("console_sign_outs")
