"""An API key's rate bucket instant (``tat``) is never ``infinity``.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06

``api_key_rate_buckets.tat`` is ``-infinity`` for a full bucket (``ensure_rate_bucket``, and a
change of the key's limits) and a finite instant otherwise. A row given ``infinity`` by hand
failed every request of that key: PostgreSQL 16 and older cannot subtract it from now, and 17
on returns an infinite wait, which no ``Retry-After`` can say. No range as the
jobs' is put on it: a burst of a million at one a day legitimately reaches 2,700 years ahead.
Such a row gets a full bucket before the check is added.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("UPDATE api_key_rate_buckets SET tat = '-infinity' WHERE tat = 'infinity'")
    op.create_check_constraint(
        op.f("ck_api_key_rate_buckets_tat_not_infinity"),
        "api_key_rate_buckets",
        "tat <> 'infinity'::timestamptz",
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("ck_api_key_rate_buckets_tat_not_infinity"), "api_key_rate_buckets", type_="check"
    )
