"""Least-privilege roles (revision 0006): login roles in ``task_queue_api`` and
``task_queue_worker`` can do their service's work through Queue and KeyStore, and nothing more.

Roles belong to the cluster, so each test creates login roles of its own, with unique names,
and drops them at teardown. They have a password for servers that check one; the throwaway
cluster trusts loopback connections.
"""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from pg_provider import PgServer, run_sync
from queue_core.db import create_pool
from queue_core.jobs import NewJob, Outcome, OutcomeKind
from queue_core.keys import KeyStore
from queue_core.migrate import downgrade, upgrade
from queue_core.queue import Queue
from queue_core.schedules import Schedule, Schedules
from queue_core.states import JobStatus

API_ROLE = "task_queue_api"
WORKER_ROLE = "task_queue_worker"
PASSWORD = "role-test-password"  # noqa: S105 - a throwaway role on a throwaway server

# What no service role may do: only the owner (the migrating role) changes the schema.
FORBIDDEN = (
    "DROP TABLE jobs",
    "TRUNCATE jobs",
    "ALTER TABLE jobs ADD COLUMN extra int",
    "CREATE TABLE intruder (id int)",
)

RoleUrl = Callable[[str], Awaitable[str]]  # group role -> URL of a new login role in it


def _as_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}:{PASSWORD}@{host}"))


async def _execute(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(name="role_url")
async def fx_role_url(db_url: str) -> AsyncIterator[RoleUrl]:
    """Creates login roles in a group role, and the URL of this test's database as each."""
    created: list[str] = []

    async def make(group: str) -> str:
        name = f"tq_{group.removeprefix('task_queue_')}_{uuid.uuid4().hex[:10]}"
        await _execute(db_url, f"CREATE ROLE {name} LOGIN PASSWORD '{PASSWORD}' IN ROLE {group}")
        created.append(name)
        return _as_user(db_url, name)

    yield make
    for name in created:
        await _execute(db_url, f"DROP ROLE IF EXISTS {name}")


@pytest.fixture(name="api_pool")
async def fx_api_pool(role_url: RoleUrl) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(await role_url(API_ROLE))
    yield pool
    await pool.close()


@pytest.fixture(name="worker_pool")
async def fx_worker_pool(role_url: RoleUrl) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(await role_url(WORKER_ROLE))
    yield pool
    await pool.close()


async def test_the_api_role_enqueues_reads_cancels_retries_and_reads_stats(
    api_pool: asyncpg.Pool,
) -> None:
    queue = Queue(api_pool)
    await queue.ping()
    job_id = await queue.enqueue(NewJob(type="noop", payload={"n": 1}, queue="roles"))
    [second] = await queue.enqueue_many([NewJob(type="noop", payload={}, queue="roles")])

    assert (await queue.get(job_id)).status is JobStatus.PENDING
    assert [s.queue for s in await queue.stats()] == ["roles"]
    assert (await queue.cancel(job_id)).after is JobStatus.CANCELLED
    assert (await queue.retry(job_id)).after is JobStatus.PENDING
    assert (await queue.get(second)).status is JobStatus.PENDING


async def test_the_api_role_sees_other_roles_transactions(
    db_url: str, api_pool: asyncpg.Pool
) -> None:
    # A transaction held open by the superuser: visible only through pg_read_all_stats.
    other = await asyncpg.connect(db_url)
    try:
        async with other.transaction():
            await other.execute("SELECT 1")
            assert await Queue(api_pool).oldest_transaction_age_s() > 0
    finally:
        await other.close()


async def test_the_api_role_creates_finds_revokes_and_marks_keys(api_pool: asyncpg.Pool) -> None:
    keys = KeyStore(api_pool)
    new = await keys.create(name="roles", scopes=["jobs:write"], queues=["roles"])

    stored = await keys.find(new.info.prefix)
    assert stored is not None
    assert stored.matches(new.secret)
    assert [k.name for k in await keys.list_all()] == ["roles"]
    await keys.mark_used([(new.info.prefix, new.info.created_at)])
    assert (await keys.revoke("roles")).revoked_at is not None


async def test_the_worker_role_claims_heartbeats_finishes_and_rescues(
    api_pool: asyncpg.Pool, worker_pool: asyncpg.Pool
) -> None:
    api, worker = Queue(api_pool), Queue(worker_pool)
    for _ in range(3):
        await api.enqueue(NewJob(type="noop", payload={}, queue="roles"))
    await worker.ping()

    done, released, lost = await worker.claim(worker_id="w1", queues=["roles"], limit=3, lease_s=60)
    leases = await worker.heartbeat(
        worker_id="w1", attempts=[(j.id, j.attempt) for j in (done, released)], lease_s=60
    )
    assert {lease.job_id for lease in leases} == {done.id, released.id}
    recorded = await worker.finish(
        worker_id="w1",
        outcomes=[
            Outcome(done.id, OutcomeKind.COMPLETED, attempt=done.attempt),
            Outcome(released.id, OutcomeKind.RELEASED, attempt=released.attempt),  # notifies
        ],
    )
    assert {r.job_id: r.status for r in recorded} == {
        done.id: JobStatus.COMPLETED,
        released.id: JobStatus.PENDING,
    }
    # The third one's lease runs out at once: "its worker died".
    await worker_pool.execute(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1", lost.id
    )
    assert [r.job_id for r in await worker.rescue_expired()] == [lost.id]


async def test_the_worker_role_registers_and_ticks_schedules_and_the_api_role_pauses_them(
    api_pool: asyncpg.Pool, worker_pool: asyncpg.Pool
) -> None:
    schedule = Schedule(name="roles", every_s=1, queue="roles")
    worker, api = Schedules(worker_pool), Schedules(api_pool)
    await worker.register([schedule])
    tick = datetime(2026, 12, 4, 10, tzinfo=UTC)
    assert await worker.take_tick(schedule, tick, run=True) is not None
    assert [s.last_run_at for s in await api.list()] == [tick]
    assert await api.set_paused("roles", paused=True) is not None
    assert await worker.take_tick(schedule, tick + timedelta(seconds=1), run=True) is None


async def test_the_api_role_signs_console_sessions_out_and_prunes_the_expired(
    api_pool: asyncpg.Pool,
) -> None:
    store = KeyStore(api_pool)
    await store.sign_out_console_session("gone", datetime.now(UTC) - timedelta(hours=2))
    await store.sign_out_console_session("live", datetime.now(UTC) + timedelta(hours=1))
    assert await store.console_session_signed_out("live")
    assert not await store.console_session_signed_out("gone")  # pruned: refuses nothing now
    assert not await store.console_session_signed_out("never")


@pytest.mark.parametrize("group", [API_ROLE, WORKER_ROLE])
@pytest.mark.parametrize("statement", FORBIDDEN)
async def test_no_service_role_may_change_the_schema(
    role_url: RoleUrl, group: str, statement: str
) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await _execute(await role_url(group), statement)


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM api_keys",
        "SELECT * FROM api_key_rate_buckets",
        "SELECT * FROM console_sign_outs",
    ],
)
async def test_the_worker_role_may_not_read_keys(role_url: RoleUrl, statement: str) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
        await _execute(await role_url(WORKER_ROLE), statement)


async def _privileges(url: str) -> set[tuple[str, str, str]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT grantee, table_name, privilege_type FROM information_schema.table_privileges"
            " WHERE grantee IN ($1, $2, 'PUBLIC')"
            " AND table_name IN ('jobs', 'api_keys', 'api_key_rate_buckets', 'queues', 'workers',"
            " 'schedules', 'concurrency_keys', 'job_dependencies', 'console_sign_outs')",
            API_ROLE,
            WORKER_ROLE,
        )
        return {(r["grantee"], r["table_name"], r["privilege_type"]) for r in rows}
    finally:
        await conn.close()


GRANTED = {
    (API_ROLE, "jobs", "SELECT"),
    (API_ROLE, "jobs", "INSERT"),
    (API_ROLE, "jobs", "UPDATE"),
    (API_ROLE, "jobs", "DELETE"),
    (API_ROLE, "api_keys", "SELECT"),
    (API_ROLE, "api_keys", "INSERT"),
    (API_ROLE, "api_keys", "UPDATE"),
    (API_ROLE, "api_key_rate_buckets", "SELECT"),
    (API_ROLE, "api_key_rate_buckets", "INSERT"),
    (API_ROLE, "api_key_rate_buckets", "UPDATE"),
    (API_ROLE, "queues", "SELECT"),
    (API_ROLE, "queues", "INSERT"),
    (API_ROLE, "queues", "UPDATE"),
    (API_ROLE, "workers", "SELECT"),
    (WORKER_ROLE, "jobs", "SELECT"),
    (WORKER_ROLE, "jobs", "UPDATE"),
    (WORKER_ROLE, "queues", "SELECT"),
    (WORKER_ROLE, "workers", "SELECT"),
    (WORKER_ROLE, "workers", "INSERT"),
    (WORKER_ROLE, "workers", "UPDATE"),
    (WORKER_ROLE, "workers", "DELETE"),
    # 0010: schedules, and the workers enqueue their ticks' jobs.
    (API_ROLE, "schedules", "SELECT"),
    (API_ROLE, "schedules", "UPDATE"),
    (WORKER_ROLE, "schedules", "SELECT"),
    (WORKER_ROLE, "schedules", "INSERT"),
    (WORKER_ROLE, "schedules", "UPDATE"),
    (WORKER_ROLE, "jobs", "INSERT"),
    # 0011: retention, a worker service, deletes finished jobs.
    (WORKER_ROLE, "jobs", "DELETE"),
    # 0012: limits per key and dependencies, written by enqueues (API, schedules) and claims.
    *(
        (role, table, privilege)
        for role in (API_ROLE, WORKER_ROLE)
        for table in ("concurrency_keys", "job_dependencies")
        for privilege in ("SELECT", "INSERT", "UPDATE")
    ),
    # 0014: a deleted job's edges go with it (retention, DELETE /v1/jobs/{id}).
    (API_ROLE, "job_dependencies", "DELETE"),
    (WORKER_ROLE, "job_dependencies", "DELETE"),
    # 0016: the console's sessions signed out before their expiry, pruned by the API.
    (API_ROLE, "console_sign_outs", "SELECT"),
    (API_ROLE, "console_sign_outs", "INSERT"),
    (API_ROLE, "console_sign_outs", "DELETE"),
}


# Later revisions add tables (0007 buckets, 0008 queues and workers, 0010 schedules) and grant
# the worker INSERT (0010, schedule ticks) and DELETE (0011, retention) on jobs.
GRANTED_BY_0006 = {
    g
    for g in GRANTED
    if g[1] in ("jobs", "api_keys")
    and g not in {(WORKER_ROLE, "jobs", "INSERT"), (WORKER_ROLE, "jobs", "DELETE")}
}


def test_the_roles_revision_upgrades_downgrades_and_upgrades_again(empty_db_url: str) -> None:
    upgrade(empty_db_url, "0005")
    assert run_sync(_privileges(empty_db_url)) == set()
    upgrade(empty_db_url, "0006")
    assert run_sync(_privileges(empty_db_url)) == GRANTED_BY_0006
    downgrade(empty_db_url, "0005")
    assert run_sync(_privileges(empty_db_url)) == set()
    upgrade(empty_db_url)
    assert run_sync(_privileges(empty_db_url)) == GRANTED


@pytest.fixture(name="owned_db_url")
def fx_owned_db_url(pg_server: PgServer, template_db: str) -> Iterator[str]:
    """A new database owned by a login role that is neither superuser nor CREATEROLE. (The
    superuser's migration of ``template_db`` created the group roles.)"""
    assert template_db
    suffix = uuid.uuid4().hex[:10]
    owner, name = f"tq_owner_{suffix}", f"o_{suffix}"
    admin = pg_server.url("postgres")
    run_sync(
        _execute(
            admin,
            f"CREATE ROLE {owner} LOGIN PASSWORD '{PASSWORD}'",
            f'CREATE DATABASE "{name}" OWNER {owner}',
        )
    )
    yield _as_user(pg_server.url(name), owner)
    run_sync(
        _execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f"DROP ROLE {owner}")
    )


def test_an_owner_that_may_not_create_roles_still_migrates_and_grants(owned_db_url: str) -> None:
    # The group roles exist already; this owner may only grant to them.
    upgrade(owned_db_url)
    assert run_sync(_privileges(owned_db_url)) == GRANTED
    downgrade(owned_db_url, "0005")
    assert run_sync(_privileges(owned_db_url)) == set()
