"""The named SQL statements of ``queries.sql``, loaded once at import."""

import re
from importlib.resources import files
from typing import Final

_NAME_LINE = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def _parse(text: str) -> dict[str, str]:
    parts = _NAME_LINE.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        statement = body.strip()
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice in queries.sql")
        queries[name] = statement
    return queries


QUERIES: Final[dict[str, str]] = _parse(files(__package__).joinpath("queries.sql").read_text())
