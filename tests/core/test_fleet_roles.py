"""The fleet's statements (queue_core.fleet) under the services' least-privilege roles: a worker
registers, beats (pruning the dead), reads the pauses and leaves; the API pauses, resumes and
lists. Each test makes login roles of its own in the group roles and drops them afterwards."""

import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from queue_core.db import create_pool
from queue_core.fleet import Fleet, WorkerInfo

PASSWORD = "fleet-role-password"  # noqa: S105 - a throwaway role on a throwaway server


async def _pool_as(db_url: str, group: str, created: list[str]) -> asyncpg.Pool:
    name = f"tq_fleet_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{PASSWORD}' IN ROLE {group}")
    finally:
        await conn.close()
    created.append(name)
    parts = urlsplit(db_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return await create_pool(urlunsplit(parts._replace(netloc=f"{name}:{PASSWORD}@{host}")))


@pytest.fixture(name="fleets")
async def fx_fleets(db_url: str) -> AsyncIterator[tuple[Fleet, Fleet]]:
    """(the worker's fleet, the API's fleet), each on a pool logged in as its role."""
    created: list[str] = []
    worker_pool = await _pool_as(db_url, "task_queue_worker", created)
    api_pool = await _pool_as(db_url, "task_queue_api", created)
    yield Fleet(worker_pool), Fleet(api_pool)
    await worker_pool.close()
    await api_pool.close()
    conn = await asyncpg.connect(db_url)
    try:
        for name in created:
            await conn.execute(f"DROP ROLE IF EXISTS {name}")
    finally:
        await conn.close()


async def test_the_service_roles_can_do_their_part_of_the_fleet(
    fleets: tuple[Fleet, Fleet],
) -> None:
    worker, api = fleets
    info = WorkerInfo(
        id="h:1:abc", host="h", pid=1, queues=("a", "b"), task_types=("noop",), concurrency=2
    )

    await worker.beat(info)
    await worker.beat(info, gone_after_s=0.0)  # prunes every other row: none to prune here
    await api.set_paused("a", paused=True)
    listed = await api.live_workers()
    paused = await worker.paused_queues(["a", "b"])
    await worker.leave(info.id)

    assert [w.id for w in listed] == [info.id]
    assert paused == {"a"}
    assert [s.name for s in await api.queue_states()] == ["a"]
    assert await api.live_workers() == []


async def test_a_worker_may_not_pause_a_queue(fleets: tuple[Fleet, Fleet]) -> None:
    worker, _ = fleets
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await worker.set_paused("a", paused=True)
