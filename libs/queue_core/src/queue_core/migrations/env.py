"""Alembic environment: runs the migrations over asyncpg under a PostgreSQL advisory lock.

The lock makes ``queue-migrate`` safe to start from several replicas at once (a Kubernetes Job
retried, compose scaled): the first one migrates, the others wait and then find nothing to do.

The lock is held by a connection of its own, idle outside any transaction, and the others wait
by polling ``pg_try_advisory_lock`` rather than blocking in ``pg_advisory_lock``: a revision
that builds an index CONCURRENTLY waits for every transaction older than the build, and a
migrate blocked on the lock inside a transaction would be one, waiting in turn for the build
(a deadlock PostgreSQL breaks by failing one of them).
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from alembic import context
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from queue_core.db import normalize_database_url
from queue_core.models import Base

# Arbitrary but fixed: every queue-migrate process must contend for the same key.
MIGRATION_LOCK_KEY = 0x7155_6D69  # "qumi"
LOCK_POLL_S = 0.2

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


def _run(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()


@asynccontextmanager
async def _migration_lock(dsn: str) -> AsyncIterator[None]:
    """Hold the migration lock on a connection of its own (see the module's docstring)."""
    conn = await asyncpg.connect(dsn)
    try:
        while True:  # polled, never waited for in a statement: see the module's docstring
            if await conn.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK_KEY):
                break
            await asyncio.sleep(LOCK_POLL_S)
        yield
    finally:
        await conn.close()  # ends the session, and with it the lock


async def _run_online() -> None:
    # asyncpg opens the connection from the whole URL, as the queue's own pool does: SQLAlchemy
    # would pass the URL's query (sslmode, sslrootcert, ...) to asyncpg.connect() as keyword
    # arguments, which it refuses. So TLS options mean the same to migrations as to the services.
    dsn = normalize_database_url(config.get_main_option("sqlalchemy.url") or "")
    engine = create_async_engine(
        "postgresql+asyncpg://", poolclass=NullPool, async_creator=lambda: asyncpg.connect(dsn)
    )
    try:
        async with _migration_lock(dsn), engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    _configure()
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
