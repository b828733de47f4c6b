"""``queue-login-roles``: create or update the API's and the workers' own login roles.

Each goes in the group role that holds its grants (revision 0006), with the password its
database URL carries. Run it as the owner (the migrating role) after ``queue-migrate``. It
reads three URLs, each from ``<VARIABLE>_FILE`` too: ``DATABASE_URL``, the owner's, which it
connects with, and ``API_DATABASE_URL`` and ``WORKER_DATABASE_URL``, the very URLs the API and
the workers connect with. So the password a role gets is the one its service sends, and the
two cannot drift apart.

For each service URL, the role it names is created (LOGIN, in its group and nothing else) or,
if it exists, given that password again and put in its group: running it again after a secret
changed applies the new password. A URL without a password (certificate or trust
authentication) leaves the role's password alone. Then it logs in with each URL and checks
that the session is that role, with its group's privileges.

An owner that may not create roles (neither superuser nor CREATEROLE) changes nothing: the
roles must have been made by hand, and the check after still runs, so a wrong secret stops a
release before its pods start.

It refuses a URL that names the owner, one of the group roles, a role with powers of its own
(superuser, CREATEROLE, CREATEDB, REPLICATION, BYPASSRLS), a member of any other role, or the
same role for both services. Passwords are sent as SCRAM-SHA-256 verifiers, as psql's
``\\password`` does: a plain password in ``ALTER ROLE`` could land in the server's log.

Exit status: 0 done; 1 refused, or the database refused or could not be reached; 2 a bad
configuration. No message holds a URL or a password.
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import os
import stringprep
import sys
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg
from pydantic import Field

from queue_core.db import CONNECTION_ERRORS
from queue_core.log import configure, get_logger
from queue_core.settings import CommonSettings, DatabaseUrl, Secret, load_settings

PROG: Final = "queue-login-roles"
# The group roles of revision 0006, spelled out as there.
API_GROUP: Final = "task_queue_api"
WORKER_GROUP: Final = "task_queue_worker"
# Attributes that give a role more than its group's grants.
POWERS: Final = ("rolsuper", "rolcreaterole", "rolcreatedb", "rolreplication", "rolbypassrls")
# PostgreSQL's own default (scram_iterations), so a verifier made here costs what one the
# server makes does.
SCRAM_ITERATIONS: Final = 4096
SCRAM_SALT_BYTES: Final = 16
MAX_IDENTIFIER_BYTES: Final = 63  # NAMEDATALEN - 1: a longer name would be truncated
CONNECT_TIMEOUT_S: Final = 10.0

log = get_logger("queue_core.login_roles")


class LoginRolesSettings(CommonSettings):
    """``DATABASE_URL`` is the owner's; the other two are the services' own."""

    api_database_url: Secret[DatabaseUrl] = Field(
        validation_alias="API_DATABASE_URL",
        description="the URL the API connects with; or API_DATABASE_URL_FILE",
    )
    worker_database_url: Secret[DatabaseUrl] = Field(
        validation_alias="WORKER_DATABASE_URL",
        description="the URL the workers connect with; or WORKER_DATABASE_URL_FILE",
    )


class LoginRoleError(Exception):
    """A URL or a role this tool will not use. The message names variables and roles only."""


@dataclass(frozen=True)
class LoginRole:
    """A service's login role, as its URL names it."""

    variable: str  # the setting the URL came from, for messages
    group: str
    name: str
    password: str | None = field(repr=False)
    url: str = field(repr=False)


def login_role(variable: str, group: str, url: str) -> LoginRole:
    """The role and password ``url`` logs in with. As in libpq and asyncpg, the URL's user
    and password come before its ``?user=`` and ``?password=`` parameters."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    name = unquote(parts.username) if parts.username else query.get("user", [""])[-1]
    password: str | None = None
    if parts.password is not None:
        password = unquote(parts.password)
    elif "password" in query:
        password = query["password"][-1]
    if not name:
        raise LoginRoleError(f"{variable}: the URL names no user")
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise LoginRoleError(
            f"{variable}: the user name is longer than {MAX_IDENTIFIER_BYTES} bytes"
        )
    if name in (API_GROUP, WORKER_GROUP) or name.startswith("pg_"):
        raise LoginRoleError(f"{variable}: {name} is a group role, not a login role")
    return LoginRole(variable, group, name, password or None, url)


# -- SCRAM-SHA-256 -------------------------------------------------------------------------

_SASLPREP_PROHIBITED: Final[tuple[Callable[[str], bool], ...]] = (
    stringprep.in_table_a1,  # unassigned code points, which PostgreSQL prohibits too
    stringprep.in_table_c12,
    stringprep.in_table_c21_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
)


def saslprep(password: str) -> str:
    """The password as PostgreSQL's ``pg_saslprep`` prepares it before hashing (RFC 4013);
    where that fails, PostgreSQL (and every client) falls back to the password as it is."""
    if password.isascii():
        return password
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in password if not stringprep.in_table_b1(c)
    )
    prepared = unicodedata.normalize("NFKC", mapped)
    if not prepared or any(test(c) for c in prepared for test in _SASLPREP_PROHIBITED):
        return password
    if any(stringprep.in_table_d1(c) for c in prepared) and (
        not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1]))
        or any(stringprep.in_table_d2(c) for c in prepared)
    ):
        return password
    return prepared


def scram_verifier(
    password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS
) -> str:
    """What PostgreSQL stores for ``password`` (``pg_authid.rolpassword``): given in
    ``CREATE ROLE … PASSWORD``, it is kept as it is, and the password never reaches the server."""
    salt = os.urandom(SCRAM_SALT_BYTES) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password).encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


# -- the roles -----------------------------------------------------------------------------


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


async def _refuse_powerful(conn: asyncpg.Connection, role: LoginRole, owner: str) -> None:
    """Stop before touching a role that would give its service more than its group's grants."""
    if role.name == owner:
        raise LoginRoleError(f"{role.variable}: {role.name} is the owner, which migrates")
    row = await conn.fetchrow(
        f"SELECT {', '.join(POWERS)} FROM pg_roles WHERE rolname = $1",
        role.name,
    )
    if row is None:
        return
    powers = [power.removeprefix("rol").upper() for power in POWERS if row[power]]
    if powers:
        raise LoginRoleError(
            f"{role.variable}: {role.name} has {', '.join(powers)}; a service's role must hold "
            "only its group's grants"
        )
    others = await conn.fetch(
        "SELECT g.rolname FROM pg_auth_members m"
        " JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member"
        " WHERE r.rolname = $1 AND g.rolname <> $2 ORDER BY g.rolname",
        role.name,
        role.group,
    )
    if others:
        names = ", ".join(str(other["rolname"]) for other in others)
        raise LoginRoleError(
            f"{role.variable}: {role.name} is also a member of {names}; a service's role must "
            f"be a member of {role.group} only"
        )


async def _ensure(conn: asyncpg.Connection, role: LoginRole) -> None:
    """Create the role, or give it its password and group again."""
    name, group = _ident(role.name), _ident(role.group)
    password = ""
    if role.password is not None:
        password = f" PASSWORD {_literal(scram_verifier(role.password))} VALID UNTIL 'infinity'"
    for attempt in (1, 2):
        try:
            async with conn.transaction():
                exists = await conn.fetchval(
                    "SELECT true FROM pg_roles WHERE rolname = $1", role.name
                )
                if not exists:
                    await conn.execute(
                        f"CREATE ROLE {name} LOGIN INHERIT{password} IN ROLE {group}"
                    )
                    log.info("login_role_created", role=role.name, group=role.group)
                    return
                await conn.execute(f"ALTER ROLE {name} LOGIN INHERIT{password}")
                if not await conn.fetchval(
                    "SELECT pg_has_role($1::name, $2::name, 'MEMBER')", role.name, role.group
                ):
                    await conn.execute(f"GRANT {group} TO {name}")
                log.info(
                    "login_role_updated",
                    role=role.name,
                    group=role.group,
                    password="set" if password else "unchanged",
                )
                return
        except (asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
            # Created meanwhile by another run: the second attempt finds it and updates it.
            if attempt == 2:
                raise


async def _check_login(role: LoginRole, hint: str) -> None:
    """Log in as the service will, and check that the session has its group's privileges."""
    try:
        conn = await asyncpg.connect(
            role.url, timeout=CONNECT_TIMEOUT_S, server_settings={"application_name": PROG}
        )
    except asyncpg.PostgresError as exc:  # e.g. password authentication failed
        raise LoginRoleError(
            f"{role.variable}: cannot log in as {role.name}: {exc}{hint}"
        ) from None
    except CONNECTION_ERRORS as exc:
        raise LoginRoleError(f"{role.variable}: cannot connect: {type(exc).__name__}") from None
    try:
        row = await conn.fetchrow(
            "SELECT current_user AS name, pg_has_role(current_user, $1::name, 'USAGE') AS grants",
            role.group,
        )
    finally:
        await conn.close()
    assert row is not None  # noqa: S101 - SELECT without FROM returns one row
    if row["name"] != role.name:
        raise LoginRoleError(f"{role.variable}: logged in as {row['name']}, not {role.name}")
    if not row["grants"]:
        raise LoginRoleError(
            f"{role.variable}: {role.name} does not have the privileges of {role.group}{hint}"
        )
    log.info("login_role_checked", role=role.name, group=role.group)


async def apply(owner_url: str, roles: Sequence[LoginRole]) -> None:
    """Create or update ``roles`` as the owner, then log in as each."""
    names = [role.name for role in roles]
    if len(set(names)) != len(names):
        raise LoginRoleError(
            f"{' and '.join(r.variable for r in roles)} name the same role: each service "
            "needs its own"
        )
    conn = await asyncpg.connect(
        owner_url, timeout=CONNECT_TIMEOUT_S, server_settings={"application_name": PROG}
    )
    try:
        owner = await conn.fetchrow(
            "SELECT rolname, rolsuper OR rolcreaterole AS manages FROM pg_roles"
            " WHERE rolname = current_user"
        )
        assert owner is not None  # noqa: S101 - current_user is a role
        groups = {role.group for role in roles}
        found = await conn.fetch(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY($1::name[])", sorted(groups)
        )
        missing = sorted(groups - {str(row["rolname"]) for row in found})
        if missing:
            raise LoginRoleError(
                f"group role {', '.join(missing)} missing: run queue-migrate first, as a role "
                "that may create roles, or create them (see revision 0006)"
            )
        for role in roles:
            await _refuse_powerful(conn, role, str(owner["rolname"]))
        manages = bool(owner["manages"])
        if manages:
            for role in roles:
                await _ensure(conn, role)
        else:
            log.info(
                "login_roles_not_managed",
                owner=owner["rolname"],
                reason="the owner may not create roles: they must exist already",
            )
    finally:
        await conn.close()
    for role in roles:
        hint = (
            ""
            if manages
            else (
                f" ({owner['rolname']} may not create roles; as a role that may: CREATE ROLE "
                f"{role.name} LOGIN PASSWORD '…' IN ROLE {role.group})"
            )
        )
        await _check_login(role, hint)


def main(argv: list[str] | None = None) -> None:
    # No options: --help shows what it does; everything else comes from the environment.
    argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0]).parse_args(argv)
    settings = load_settings(LoginRolesSettings)
    configure(level=settings.log_level, fmt=settings.log_format)
    try:
        roles = [
            login_role("API_DATABASE_URL", API_GROUP, settings.api_database_url),
            login_role("WORKER_DATABASE_URL", WORKER_GROUP, settings.worker_database_url),
        ]
        asyncio.run(apply(settings.database_url, roles))
    except LoginRoleError as exc:
        log.error("login_roles_failed", reason=str(exc))  # noqa: TRY400 - ours: no traceback
        sys.exit(1)
    except CONNECTION_ERRORS as exc:
        log.error(  # noqa: TRY400 - the cause is known; a traceback would only add noise
            "login_roles_failed", reason="database unavailable", error=type(exc).__name__
        )
        sys.exit(1)
    except asyncpg.PostgresError as exc:  # e.g. permission denied to alter a role
        log.error(  # noqa: TRY400 - the server's message says it all
            "login_roles_failed", sqlstate=exc.sqlstate, error=str(exc)
        )
        sys.exit(1)
    log.info("login_roles_done", roles=[role.name for role in roles])


if __name__ == "__main__":
    main()
