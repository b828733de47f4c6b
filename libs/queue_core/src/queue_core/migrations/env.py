"""Alembic environment: runs the migrations over asyncpg under a PostgreSQL advisory lock.

The lock makes ``queue-migrate`` safe to start from several replicas at once (a Kubernetes Job
retried, compose scaled): the first one migrates, the others wait and then find nothing to do.
"""

import asyncio

import asyncpg
from alembic import context
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from queue_core.db import normalize_database_url
from queue_core.models import Base

# Arbitrary but fixed: every queue-migrate process must contend for the same key.
MIGRATION_LOCK_KEY = 0x7155_6D69  # "qumi"

config = context.config


def _include_object(
    _obj: object,
    name: str | None,
    type_: str,
    _reflected: bool,  # noqa: FBT001 - Alembic's callback signature
    _compare_to: object,
) -> bool:
    # Alembic's own bookkeeping table is not part of our models.
    return not (type_ == "table" and name == "alembic_version")


def _configure(connection: Connection | None = None) -> None:
    context.configure(
        connection=connection,
        url=None if connection is not None else config.get_main_option("sqlalchemy.url"),
        target_metadata=Base.metadata,
        compare_type=True,
        compare_server_default=True,
        include_object=_include_object,
        literal_binds=connection is None,
    )


def _run_locked(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    connection.commit()
    try:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()


async def _run_online() -> None:
    # asyncpg opens the connection from the whole URL, as the queue's own pool does: SQLAlchemy
    # would pass the URL's query (sslmode, sslrootcert, ...) to asyncpg.connect() as keyword
    # arguments, which it refuses. So TLS options mean the same to migrations as to the services.
    dsn = normalize_database_url(config.get_main_option("sqlalchemy.url") or "")
    engine = create_async_engine(
        "postgresql+asyncpg://", poolclass=NullPool, async_creator=lambda: asyncpg.connect(dsn)
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_locked)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    _configure()
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
