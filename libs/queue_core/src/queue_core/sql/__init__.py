"""The named SQL statements of ``queries.sql`` (jobs), ``listing.sql`` (reading many jobs),
``retention.sql`` (deleting old finished jobs), ``gated.sql`` (limits per key, dependencies) and
``keys.sql`` (API keys), loaded once at import."""

import re
from importlib.resources import files
from typing import Final

_NAME_LINE = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def _parse(text: str) -> dict[str, str]:
    parts = _NAME_LINE.split(text)
    # split() keeps the captured names: a preamble, then alternating name and body.
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        statement = body.strip()
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice in queries.sql")
        queries[name] = statement
    return queries


QUERIES: Final[dict[str, str]] = _parse(files(__package__).joinpath("queries.sql").read_text())
KEY_QUERIES: Final[dict[str, str]] = _parse(files(__package__).joinpath("keys.sql").read_text())
FLEET_QUERIES: Final[dict[str, str]] = _parse(files(__package__).joinpath("fleet.sql").read_text())
LISTING_QUERIES: Final[dict[str, str]] = _parse(
    files(__package__).joinpath("listing.sql").read_text()
)
# Enqueueing with idempotency and unique keys (queue_core.keyed).
KEYED_QUERIES: Final[dict[str, str]] = _parse(files(__package__).joinpath("keyed.sql").read_text())
# Deleting finished jobs past their retention (queue_core.retention).
RETENTION_QUERIES: Final[dict[str, str]] = _parse(
    files(__package__).joinpath("retention.sql").read_text()
)
# Periodic jobs: the schedules table and the jobs of their ticks (queue_core.schedules).
SCHEDULE_QUERIES: Final[dict[str, str]] = _parse(
    files(__package__).joinpath("schedules.sql").read_text()
)
# Jobs with limits per key or dependencies (queue_core.gated, queue_core.dependencies).
GATED_QUERIES: Final[dict[str, str]] = _parse(files(__package__).joinpath("gated.sql").read_text())
