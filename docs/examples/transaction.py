"""Enqueue inside your own transaction (docs/how-to/enqueue-in-transaction.md), run against a
real, migrated database by tests/docs/test_docs_examples.py with DATABASE_URL set: one order
committed with its job, one rolled back with its job."""

import asyncio
import contextlib
import os

import asyncpg
from sqlalchemy import Integer, String
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from queue_core.jobs import NewJob
from queue_core.transactional import enqueue_in


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String)


class PaymentDeclinedError(Exception):
    pass


async def _declined_order(engine: AsyncEngine) -> None:
    async with AsyncSession(engine) as session, session.begin():
        session.add(Order(id=43, status="paid"))
        await enqueue_in(
            session, NewJob(type="ship_order", payload={"order": 43}, queue="shipping")
        )
        raise PaymentDeclinedError


async def main(database_url: str) -> None:
    engine = create_async_engine(database_url.replace("postgresql://", "postgresql+asyncpg://"))
    async with engine.begin() as ddl:
        await ddl.run_sync(Base.metadata.create_all)
    conn = await asyncpg.connect(database_url)
    await conn.execute("CREATE TABLE IF NOT EXISTS accounts (id int PRIMARY KEY, plan text)")
    await conn.execute("INSERT INTO accounts VALUES (7, 'free') ON CONFLICT DO NOTHING")
    account_id = 7
    try:
        # --8<-- [start:example]
        async with AsyncSession(engine) as session, session.begin():
            session.add(Order(id=42, status="paid"))
            await enqueue_in(
                session, NewJob(type="ship_order", payload={"order": 42}, queue="shipping")
            )
        # committed: the order and its job together; an exception before this line: neither

        async with conn.transaction():  # a plain asyncpg connection works the same way
            await conn.execute("UPDATE accounts SET plan = 'pro' WHERE id = $1", account_id)
            await enqueue_in(
                conn,
                NewJob(type="send_email", payload={}, unique_key=f"welcome:{account_id}"),
            )
        # --8<-- [end:example]
        with contextlib.suppress(PaymentDeclinedError):
            await _declined_order(engine)  # rolled back: no order 43, and no job for it
    finally:
        await conn.close()
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(os.environ["DATABASE_URL"]))
