"""``queue-migrate``: bring the database schema to the latest revision (or another one).

Run it once per deploy, before new API and worker versions start (a compose one-shot service,
a Kubernetes Job). It is safe to run from several places at once: see migrations/env.py.
"""

import argparse
import ssl
import sys
from importlib.resources import files

from alembic import command
from alembic.config import Config

from queue_core.db import CONNECTION_ERRORS, sqlalchemy_url
from queue_core.log import configure, get_logger
from queue_core.settings import CommonSettings, load_settings


def alembic_config(database_url: str) -> Config:
    """An Alembic configuration for ``database_url`` that needs no alembic.ini on disk."""
    cfg = Config()
    cfg.set_main_option("script_location", str(files("queue_core").joinpath("migrations")))
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    cfg.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="queue-migrate", description=__doc__.splitlines()[0])
    parser.add_argument(
        "revision", nargs="?", default="head", help="target revision (default: head)"
    )
    parser.add_argument(
        "--downgrade", action="store_true", help="downgrade to REVISION instead of upgrading"
    )
    args = parser.parse_args(argv)
    settings = load_settings(CommonSettings)
    configure(level=settings.log_level, fmt=settings.log_format)
    log = get_logger("queue_core.migrate")
    try:
        if args.downgrade:
            downgrade(settings.database_url, args.revision)
        else:
            upgrade(settings.database_url, args.revision)
    except ssl.SSLCertVerificationError as exc:  # sslmode=verify-ca/verify-full said no
        log.error(  # noqa: TRY400 - as below
            "migrate_failed", reason="server certificate refused", error=exc.verify_message
        )
        sys.exit(1)
    except CONNECTION_ERRORS as exc:
        log.error(  # noqa: TRY400 - the cause is known; a traceback would only add noise
            "migrate_failed", reason="database unavailable", error=type(exc).__name__
        )
        sys.exit(1)
    log.info("migrate_done", revision=args.revision, direction="down" if args.downgrade else "up")


if __name__ == "__main__":
    main()
