"""``queue-login-roles``: the services' login roles made, updated and checked from their URLs.

Roles belong to the cluster, so every test names its login roles uniquely and drops them at
teardown. The throwaway cluster trusts loopback connections, testcontainers' PostgreSQL asks
for passwords: the tests pass on both, and check a password by what the server stores for it
(``pg_authid``, read as superuser), compared with what the password hashes to. The compose
stack test logs in with them over the network.
"""

import base64
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import pytest

from helpers import BIN
from pg_provider import run_sync
from queue_core.login_roles import (
    API_GROUP,
    WORKER_GROUP,
    LoginRole,
    LoginRoleError,
    apply,
    login_role,
    scram_verifier,
)

PASSWORDS = {
    "api": "api-password-1",
    "worker": "worker-password-1",
}
PLAIN_OWNER_PASSWORD = "plain-owner-password"  # noqa: S105 - a throwaway role
SCRIPT_TIMEOUT_S = 30.0


def _as_user(url: str, user: str, password: str | None) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    login = quote(user, safe="") + ("" if password is None else ":" + quote(password, safe=""))
    return urlunsplit(parts._replace(netloc=f"{login}@{host}"))


async def _fetch(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def _execute(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _stored_verifier(admin_url: str, role: str) -> str:
    rows = await _fetch(admin_url, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", role)
    return str(rows[0]["rolpassword"])


def _hashes_to(verifier: str, password: str) -> bool:
    """Whether ``verifier`` (SCRAM-SHA-256$iterations:salt$stored:server) is ``password``'s."""
    head, _ = verifier.split("$", 2)[1:]
    iterations, salt = head.split(":")
    return scram_verifier(password, salt=base64.b64decode(salt), iterations=int(iterations)) == (
        verifier
    )


@dataclass(frozen=True)
class Names:
    api: str
    worker: str

    def roles(self, db_url: str, **passwords: str | None) -> list[LoginRole]:
        chosen = {**PASSWORDS, **passwords}
        return [
            login_role("API_DATABASE_URL", API_GROUP, _as_user(db_url, self.api, chosen["api"])),
            login_role(
                "WORKER_DATABASE_URL",
                WORKER_GROUP,
                _as_user(db_url, self.worker, chosen["worker"]),
            ),
        ]


@pytest.fixture(name="names")
def fx_names(db_url: str) -> Iterator[Names]:
    """Unique login role names, dropped at teardown with any other role the test made."""
    suffix = uuid.uuid4().hex[:10]
    names = Names(api=f"tq_api_{suffix}", worker=f"tq_worker_{suffix}")
    yield names
    run_sync(
        _execute(
            db_url,
            f"DROP ROLE IF EXISTS {names.api}",
            f"DROP ROLE IF EXISTS {names.worker}",
        )
    )


async def _members(db_url: str, role: str) -> list[str]:
    rows = await _fetch(
        db_url,
        "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
        " JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = $1 ORDER BY 1",
        role,
    )
    return [str(row["rolname"]) for row in rows]


@pytest.mark.parametrize(
    "password",
    [
        "plain-ascii",
        "with space and 'quote'",
        "pässwörd",  # NFKC leaves it as it is
        "ｐａｓｓ",  # noqa: RUF001 - fullwidth: NFKC makes it "pass"
        "soft\u00adhyphen",  # "commonly mapped to nothing": dropped
        "non\u00a0breaking",  # a non-ASCII space: becomes " "
        "\u0627\u0031",  # right-to-left, not ending so: SASLprep fails, used as it is
        "ctrl\u0085",  # a prohibited control character: used as it is
    ],
)
async def test_the_verifier_is_the_one_postgresql_makes_for_the_password(
    db_url: str, names: Names, password: str
) -> None:
    escaped = password.replace("'", "''")
    await _execute(
        db_url,
        "SET password_encryption = 'scram-sha-256'",
        f"CREATE ROLE {names.api} PASSWORD '{escaped}'",
    )
    assert _hashes_to(await _stored_verifier(db_url, names.api), password)


async def test_makes_both_roles_in_their_groups_only(db_url: str, names: Names) -> None:
    await apply(db_url, names.roles(db_url))

    assert await _members(db_url, names.api) == [API_GROUP]
    assert await _members(db_url, names.worker) == [WORKER_GROUP]
    for name, password in ((names.api, PASSWORDS["api"]), (names.worker, PASSWORDS["worker"])):
        assert _hashes_to(await _stored_verifier(db_url, name), password), name
        (row,) = await _fetch(
            db_url,
            "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolinherit"
            " FROM pg_roles WHERE rolname = $1",
            name,
        )
        assert tuple(row) == (True, False, False, False, True), name


async def test_the_worker_role_it_makes_cannot_read_api_keys(db_url: str, names: Names) -> None:
    _, worker = names.roles(db_url)
    await apply(db_url, names.roles(db_url))

    assert [r["n"] for r in await _fetch(worker.url, "SELECT count(*) AS n FROM jobs")] == [0]
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await _fetch(worker.url, "SELECT * FROM api_keys")


async def test_a_second_run_applies_a_changed_password_and_keeps_the_rest(
    db_url: str, names: Names
) -> None:
    await apply(db_url, names.roles(db_url))
    worker_before = await _stored_verifier(db_url, names.worker)

    await apply(db_url, names.roles(db_url, api="api-password-2"))

    stored = await _stored_verifier(db_url, names.api)
    assert _hashes_to(stored, "api-password-2")
    assert not _hashes_to(stored, PASSWORDS["api"])
    # Set again (a new salt), to the same password.
    worker_after = await _stored_verifier(db_url, names.worker)
    assert _hashes_to(worker_after, PASSWORDS["worker"])
    assert worker_after != worker_before
    assert await _members(db_url, names.api) == [API_GROUP]


async def test_an_existing_role_gets_its_login_and_group(db_url: str, names: Names) -> None:
    await _execute(db_url, f"CREATE ROLE {names.api} NOLOGIN NOINHERIT")

    await apply(db_url, names.roles(db_url))

    (row,) = await _fetch(
        db_url, "SELECT rolcanlogin, rolinherit FROM pg_roles WHERE rolname = $1", names.api
    )
    assert tuple(row) == (True, True)
    assert await _members(db_url, names.api) == [API_GROUP]


async def test_a_url_without_password_leaves_the_password_alone(
    db_url: str, names: Names, monkeypatch: pytest.MonkeyPatch
) -> None:
    await apply(db_url, names.roles(db_url))
    before = await _stored_verifier(db_url, names.api)

    # Where the server asks for one, the check logs in with the password from elsewhere, as
    # the service would (libpq's and asyncpg's PGPASSWORD, or a passfile).
    monkeypatch.setenv("PGPASSWORD", PASSWORDS["api"])
    await apply(db_url, names.roles(db_url, api=None))

    assert await _stored_verifier(db_url, names.api) == before


def test_the_role_comes_from_the_url_or_its_parameters() -> None:
    role = login_role("V", API_GROUP, "postgresql://a%40b:p%3Aw@h:5432/d")
    assert (role.name, role.password) == ("a@b", "p:w")
    role = login_role("V", API_GROUP, "postgresql://h/d?user=u&password=pw")
    assert (role.name, role.password) == ("u", "pw")
    role = login_role("V", API_GROUP, "postgresql://u@h/d?password=pw")
    assert (role.name, role.password) == ("u", "pw")
    assert login_role("V", API_GROUP, "postgresql://u@h/d").password is None
    assert "pw" not in repr(login_role("V", API_GROUP, "postgresql://u:pw@h/d"))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://h/d", "V: the URL names no user"),
        (f"postgresql://{API_GROUP}:x@h/d", f"V: {API_GROUP} is a group role"),
        ("postgresql://pg_monitor:x@h/d", "V: pg_monitor is a group role"),
        (f"postgresql://{'r' * 64}:x@h/d", "longer than 63 bytes"),
    ],
)
def test_a_url_that_names_no_login_role_is_refused(url: str, message: str) -> None:
    with pytest.raises(LoginRoleError, match=message):
        login_role("V", API_GROUP, url)


async def test_the_owner_is_never_made_a_service_role(db_url: str, names: Names) -> None:
    owner = urlsplit(db_url).username
    assert owner
    api, worker = names.roles(db_url)
    as_owner = login_role(api.variable, api.group, _as_user(db_url, owner, "x"))
    with pytest.raises(LoginRoleError, match=r"API_DATABASE_URL: .* is the owner"):
        await apply(db_url, [as_owner, worker])
    assert await _members(db_url, names.worker) == [], "nothing was changed"


async def test_one_role_for_both_services_is_refused(db_url: str, names: Names) -> None:
    api, worker = names.roles(db_url)
    same = login_role(worker.variable, worker.group, api.url)
    with pytest.raises(LoginRoleError, match="name the same role"):
        await apply(db_url, [api, same])


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("CREATE ROLE {worker} CREATEDB", "has CREATEDB"),
        ("CREATE ROLE {worker} IN ROLE " + API_GROUP, f"also a member of {API_GROUP}"),
    ],
)
async def test_a_role_with_more_than_its_group_is_refused(
    db_url: str, names: Names, setup: str, message: str
) -> None:
    await _execute(db_url, setup.format(worker=names.worker))
    with pytest.raises(LoginRoleError, match=f"WORKER_DATABASE_URL: {names.worker} .*{message}"):
        await apply(db_url, names.roles(db_url))
    assert await _fetch(db_url, "SELECT 1 FROM pg_roles WHERE rolname = $1", names.api) == []


async def test_missing_group_roles_say_to_migrate_first(db_url: str, names: Names) -> None:
    api, worker = names.roles(db_url)
    orphan = LoginRole(api.variable, "tq_no_such_group", api.name, api.password, api.url)
    with pytest.raises(LoginRoleError, match="tq_no_such_group missing: run queue-migrate"):
        await apply(db_url, [orphan, worker])


@pytest.fixture(name="plain_owner_url")
def fx_plain_owner_url(db_url: str) -> Iterator[str]:
    """This test's database as a role that may log in and nothing more."""
    owner = f"tq_owner_{uuid.uuid4().hex[:10]}"
    run_sync(_execute(db_url, f"CREATE ROLE {owner} LOGIN PASSWORD '{PLAIN_OWNER_PASSWORD}'"))
    yield _as_user(db_url, owner, PLAIN_OWNER_PASSWORD)
    run_sync(_execute(db_url, f"DROP ROLE {owner}"))


async def test_an_owner_that_may_not_create_roles_only_checks_them(
    db_url: str, plain_owner_url: str, names: Names
) -> None:
    roles = names.roles(db_url)
    with pytest.raises(LoginRoleError, match=f"may not create roles; .*CREATE ROLE {names.api}"):
        await apply(plain_owner_url, roles)

    await apply(db_url, roles)  # as superuser: now they exist
    before = await _stored_verifier(db_url, names.api)
    await apply(plain_owner_url, roles)
    # Setting the password again would have salted it anew.
    assert await _stored_verifier(db_url, names.api) == before, "changed nothing"


async def test_the_check_finds_a_role_without_its_group(
    db_url: str, plain_owner_url: str, names: Names
) -> None:
    await apply(db_url, names.roles(db_url))
    await _execute(db_url, f"REVOKE {WORKER_GROUP} FROM {names.worker}")
    with pytest.raises(LoginRoleError, match=f"{names.worker} does not have the privileges"):
        await apply(plain_owner_url, names.roles(db_url))


def test_the_script_reads_its_urls_from_files_and_logs_no_password(
    db_url: str, names: Names, tmp_path: Path
) -> None:
    api, worker = names.roles(db_url)
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DATABASE_URL", "API_", "WORKER_", "LOG_"))
    }
    for variable, url in (("API_DATABASE_URL", api.url), ("WORKER_DATABASE_URL", worker.url)):
        path = tmp_path / variable.lower()
        path.write_text(url + "\n")
        env[f"{variable}_FILE"] = str(path)
    env |= {"DATABASE_URL": db_url, "LOG_FORMAT": "json"}

    done = subprocess.run(
        [str(BIN / "queue-login-roles")],
        env=env,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
        check=False,
    )

    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    events = [json.loads(line)["event"] for line in done.stdout.splitlines()]
    assert events.count("login_role_created") == 2, output
    assert events.count("login_role_checked") == 2, output
    assert events[-1] == "login_roles_done"
    for password in PASSWORDS.values():
        assert password not in output

    env["WORKER_DATABASE_URL_FILE"] = str(tmp_path / "missing")
    refused = subprocess.run(
        [str(BIN / "queue-login-roles")],
        env=env,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
        check=False,
    )
    assert refused.returncode == 2
    assert "WORKER_DATABASE_URL_FILE: cannot read" in refused.stderr
