"""``queue-keys``: make, list and revoke API keys straight in the database (``DATABASE_URL``), to
bootstrap the first admin key or to act without one. The API's ``/v1/keys`` does the same with a
``keys:admin`` key.

- ``create --name NAME --scopes a,b [--queues q1,q2] [--expires-in-days N] [LIMITS]`` prints
  what it made, then the key itself alone on the last line (``| tail -n1`` captures it): it is
  shown this once and stored only as a hash.
- ``list`` prints every key without secret or hash; ``revoke NAME|PREFIX`` revokes one.
- ``limits NAME|PREFIX [LIMITS]`` replaces a key's rate limits; a limit left out is removed.

LIMITS are ``--requests-per-s R [--requests-burst B] --jobs-per-s R [--jobs-burst B]``; a burst
defaults to one second's worth.

Exit status: 0 done; 2 a bad argument (an unknown scope, a bad name), named on stderr; 1 the
database refused (a duplicate name, an unknown key) or could not be reached.
"""

import argparse
import asyncio
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from queue_core.db import create_pool
from queue_core.errors import TransientDatabaseError
from queue_core.keys import (
    ALL_SCOPES,
    ApiKeyError,
    ApiKeyNotFoundError,
    DuplicateKeyNameError,
    InvalidKeySpecError,
    KeyInfo,
    KeyStore,
    RateLimit,
    RateLimits,
    check_name,
    check_queues,
    parse_scopes,
)
from queue_core.settings import CommonSettings, load_settings

PROG = "queue-keys"
UNDEFINED_TABLE = "42P01"  # SQLSTATE


def _commas(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="make a key; its secret is the last line")
    create.add_argument("--name", required=True, help="unique name (letters, digits, ._:@-)")
    create.add_argument(
        "--scopes", required=True, type=_commas, help=f"comma-separated: {','.join(ALL_SCOPES)}"
    )
    create.add_argument("--queues", type=_commas, help="comma-separated (default: every queue)")
    create.add_argument("--expires-in-days", type=int, help="default: never expires")
    _limit_arguments(create)
    commands.add_parser("list", help="every key, without secrets")
    revoke = commands.add_parser("revoke", help="revoke a key by name or prefix")
    revoke.add_argument("name_or_prefix", metavar="NAME|PREFIX")
    limits = commands.add_parser("limits", help="replace a key's rate limits (none: unlimited)")
    limits.add_argument("name_or_prefix", metavar="NAME|PREFIX")
    _limit_arguments(limits)
    return parser


def _limit_arguments(parser: argparse.ArgumentParser) -> None:
    for kind in ("requests", "jobs"):
        parser.add_argument(f"--{kind}-per-s", type=float, help=f"{kind} a second, all replicas")
        parser.add_argument(
            f"--{kind}-burst", type=int, help=f"{kind} at once (default: one second's worth)"
        )


def _limits(args: argparse.Namespace) -> RateLimits:
    """The limits the arguments give; InvalidKeySpecError names a bad one."""
    return RateLimits(
        requests=RateLimit.of(args.requests_per_s, args.requests_burst),
        jobs=RateLimit.of(args.jobs_per_s, args.jobs_burst),
    )


def _describe_limits(limits: RateLimits) -> str:
    parts = [
        f"{kind}={limit.per_s:g}/s(burst {limit.burst})"
        for kind, limit in (("requests", limits.requests), ("jobs", limits.jobs))
        if limit is not None
    ]
    return ",".join(parts) or "-"


def _describe(key: KeyInfo) -> list[str]:
    def instant(at: datetime | None) -> str:
        return "-" if at is None else at.astimezone(UTC).isoformat(timespec="seconds")

    queues = "*" if key.queues is None else ",".join(sorted(key.queues))
    state = "revoked" if key.revoked_at is not None else "active"
    if (
        key.revoked_at is None
        and key.expires_at is not None
        and key.expires_at <= datetime.now(UTC)
    ):
        state = "expired"
    return [
        key.name,
        key.prefix,
        ",".join(sorted(key.scopes)),
        queues,
        instant(key.expires_at),
        instant(key.last_used_at),
        _describe_limits(key.limits),
        state,
    ]


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


HEADER = ["NAME", "PREFIX", "SCOPES", "QUEUES", "EXPIRES", "LAST_USED", "LIMITS", "STATE"]


async def _run(args: argparse.Namespace, database_url: str) -> None:
    pool = await create_pool(database_url, max_size=1, application_name=PROG)
    try:
        store = KeyStore(pool)
        if args.command == "create":
            expires_at = (
                None
                if args.expires_in_days is None
                else datetime.now(UTC) + timedelta(days=args.expires_in_days)
            )
            new = await store.create(
                name=args.name,
                scopes=args.scopes,
                queues=args.queues,
                expires_at=expires_at,
                limits=_limits(args),
            )
            print(_table([HEADER, _describe(new.info)]))  # noqa: T201 - a CLI
            print("The key, shown this once (only its hash is stored):")  # noqa: T201
            print(new.secret)  # noqa: T201 - alone on the last line
        elif args.command == "list":
            keys = await store.list_all()
            print(_table([HEADER, *(_describe(key) for key in keys)]))  # noqa: T201
        elif args.command == "limits":
            key = await store.set_limits(args.name_or_prefix, _limits(args))
            print(f"limits of {key.name} ({key.prefix}): {_describe_limits(key.limits)}")  # noqa: T201
        else:
            key = await store.revoke(args.name_or_prefix)
            print(f"revoked {key.name} ({key.prefix})")  # noqa: T201
    finally:
        await pool.close()


def _fail(message: str, status: int) -> None:
    sys.stderr.write(f"{PROG}: {message}\n")
    raise SystemExit(status)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    # Every argument is checked before the database is touched.
    try:
        if args.command == "create":
            check_name(args.name)
            parse_scopes(args.scopes)
            check_queues(args.queues)
        if args.command in ("create", "limits"):
            _limits(args)
    except InvalidKeySpecError as exc:
        _fail(str(exc), 2)
    if args.command == "create" and args.expires_in_days is not None and args.expires_in_days < 1:
        _fail("--expires-in-days must be at least 1", 2)
    settings = load_settings(CommonSettings)
    try:
        asyncio.run(_run(args, settings.database_url))
    except (DuplicateKeyNameError, ApiKeyNotFoundError) as exc:
        _fail(str(exc), 1)
    except ApiKeyError as exc:  # pragma: no cover - checked above
        _fail(str(exc), 2)
    except (TransientDatabaseError, OSError) as exc:
        _fail(f"database unavailable ({type(exc).__name__})", 1)
    except Exception as exc:
        if getattr(exc, "sqlstate", None) != UNDEFINED_TABLE:
            raise
        _fail("the database has no api_keys table: run queue-migrate first", 1)


if __name__ == "__main__":
    main()
