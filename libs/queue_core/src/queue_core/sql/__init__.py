"""The named SQL statements of ``queries.sql`` (jobs), ``listing.sql`` (reading many jobs),
``retention.sql`` (deleting old finished jobs), ``gated.sql`` (limits per key, dependencies),
``keyed.sql`` (jobs with keys), ``schedules.sql`` (periodic jobs), ``fleet.sql`` (workers,
paused queues) and ``keys.sql`` (API keys), loaded and compiled once at import.

A statement writes its parameters by name, ``:worker_id``, and is compiled here, once, to the
``$n`` that asyncpg and PostgreSQL take: each name gets a number in order of first use, and a
name used twice is the same ``$n``. A :class:`Statement` keeps the compiled text and the names
in ``$n`` order, and runs with keyword arguments (``await Q_CLAIM.fetch(pool, worker_id=...)``)
on anything with asyncpg's methods, so no caller depends on the order of the parameters.

Compilation reads SQL's lexical structure, enough to leave alone what is not a parameter:
``::type`` casts, ``--`` and ``/* */`` comments, string literals (``'...'`` with ``''``,
``E'...'`` with backslash escapes), double-quoted identifiers and dollar-quoted bodies. A
statement that still has a positional ``$n`` is refused at load: mixing the two would number
the names wrongly.
"""

import operator
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Final, Protocol, TypeVar

_NAME_LINE = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
# What the scanner stops at: everything else is copied through as it is. The order of the
# alternatives matters: "::" before ":name", E'' before '', "$tag$" before "$1".
_TOKEN = re.compile(
    r"""
      (?P<line_comment>--[^\n]*)
    | (?P<block_comment>/\*)
    | (?P<escape_string>(?<![\w$])[eE]'(?:[^'\\]|\\.|'')*')
    | (?P<string>'(?:[^']|'')*')
    | (?P<identifier>"(?:[^"]|"")*")
    | (?P<unterminated>['"])
    | (?P<dollar_quote>(?<![\w$])\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$)
    | (?P<positional>(?<![\w$])\$[0-9]+)
    | (?P<cast>::)
    | (?P<parameter>(?<![\w:]):[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE | re.DOTALL,
)
_PARAMETER_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_BLOCK_COMMENT_PART = re.compile(r"/\*|\*/")

_R_co = TypeVar("_R_co", covariant=True)
_R = TypeVar("_R")


class Fetches(Protocol[_R_co]):
    """Runs a query for its rows: an asyncpg Pool or Connection, ``queue_core.keyed.Db``."""

    def fetch(self, query: str, /, *args: object) -> Awaitable[_R_co]: ...


class FetchesRow(Protocol[_R_co]):
    """Runs a query for its first row (None: no row): an asyncpg Pool or Connection."""

    def fetchrow(self, query: str, /, *args: object) -> Awaitable[_R_co]: ...


class FetchesValue(Protocol[_R_co]):
    """Runs a query for the first column of its first row: an asyncpg Pool or Connection."""

    def fetchval(self, query: str, /, *args: object) -> Awaitable[_R_co]: ...


class Executes(Protocol[_R_co]):
    """Runs a query for its effect: an asyncpg Pool or Connection, ``queue_core.keyed.Db``."""

    def execute(self, query: str, /, *args: object) -> Awaitable[_R_co]: ...


def _picker(params: tuple[str, ...]) -> Callable[[Mapping[str, object]], tuple[object, ...]]:
    """What takes a statement's arguments out of its keyword arguments, in ``$n`` order."""
    if not params:
        return lambda _values: ()
    if len(params) == 1:
        (only,) = params
        return lambda values: (values[only],)
    pick: Callable[[Mapping[str, object]], tuple[object, ...]] = operator.itemgetter(*params)
    return pick


@dataclass(frozen=True, slots=True)
class Statement:
    """A named statement: ``text`` is its SQL with ``$n`` parameters, ``params`` the names of
    ``$1``, ``$2``, ... in order. Run it with keyword arguments, one per name, no more, on a
    pool or a connection (``await statement.fetch(pool, job_ids=ids)``); :meth:`args` gives
    the positional arguments for the rare caller that runs ``text`` itself."""

    name: str
    text: str
    params: tuple[str, ...]
    # Derived once: each call compares its keywords with the set and picks them in order.
    _names: frozenset[str] = field(init=False, repr=False, compare=False)
    _pick: Callable[[Mapping[str, object]], tuple[object, ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        names = frozenset(self.params)
        if len(names) != len(self.params):
            raise ValueError(f"statement {self.name!r} names a parameter twice: {self.params}")
        object.__setattr__(self, "_names", names)
        object.__setattr__(self, "_pick", _picker(self.params))

    def args(self, /, **values: object) -> tuple[object, ...]:
        """The positional arguments, ``$1`` first, for ``values`` by name. Raises
        :class:`TypeError` naming the statement and the names missing or unknown."""
        if values.keys() != self._names:
            raise self._mismatch(values)
        return self._pick(values)

    async def fetch(self, db: Fetches[_R], /, **values: object) -> _R:
        return await db.fetch(self.text, *self.args(**values))

    async def fetchrow(self, db: FetchesRow[_R], /, **values: object) -> _R:
        return await db.fetchrow(self.text, *self.args(**values))

    async def fetchval(self, db: FetchesValue[_R], /, **values: object) -> _R:
        return await db.fetchval(self.text, *self.args(**values))

    async def execute(self, db: Executes[_R], /, **values: object) -> _R:
        return await db.execute(self.text, *self.args(**values))

    def _mismatch(self, values: Mapping[str, object]) -> TypeError:
        problems = []
        if missing := [p for p in self.params if p not in values]:
            problems.append("missing " + ", ".join(missing))
        if unknown := sorted(values.keys() - self._names):
            problems.append("unknown " + ", ".join(unknown))
        takes = ", ".join(self.params) or "no parameters"
        return TypeError(f"statement {self.name!r}: {'; '.join(problems)} (takes {takes})")


def _skip_block_comment(name: str, sql: str, start: int) -> int:
    """Where the block comment opened at ``start`` ends (PostgreSQL's nest)."""
    depth = 0
    for part in _BLOCK_COMMENT_PART.finditer(sql, start):
        depth += 1 if part.group() == "/*" else -1
        if depth == 0:
            return part.end()
    raise ValueError(f"statement {name!r}: unterminated /* comment")


def compile_statement(name: str, sql: str) -> Statement:
    """``sql`` with its ``:name`` parameters numbered ``$1``, ``$2``, ... in order of first use.
    Raises :class:`ValueError` naming the statement for a positional ``$n``, a parameter name
    that is not lower_snake_case, or an unterminated literal or comment."""
    pieces: list[str] = []
    numbers: dict[str, int] = {}
    copied = position = 0
    while (token := _TOKEN.search(sql, position)) is not None:
        kind = token.lastgroup
        position = token.end()
        if kind == "block_comment":
            position = _skip_block_comment(name, sql, token.start())
        elif kind == "dollar_quote":
            close = sql.find(token.group(), position)
            if close < 0:
                raise ValueError(f"statement {name!r}: unterminated {token.group()} quote")
            position = close + len(token.group())
        elif kind == "unterminated":
            raise ValueError(f"statement {name!r}: unterminated {token.group()} quote")
        elif kind == "positional":
            raise ValueError(
                f"statement {name!r} still has a positional parameter {token.group()}: "
                "write it as :name"
            )
        elif kind == "parameter":
            param = token.group()[1:]
            if not _PARAMETER_NAME.fullmatch(param):
                raise ValueError(f"statement {name!r}: parameter :{param} is not lower_snake_case")
            number = numbers.setdefault(param, len(numbers) + 1)
            pieces.append(sql[copied : token.start()])
            pieces.append(f"${number}")
            copied = position
    pieces.append(sql[copied:])
    return Statement(name, "".join(pieces), tuple(numbers))


def parse_statements(text: str, *, source: str) -> dict[str, Statement]:
    """The statements of a .sql file: each block starts with ``-- name: <name>`` and ends at
    the next one (what comes before the first is the file's preamble)."""
    parts = _NAME_LINE.split(text)
    # split() keeps the captured names: a preamble, then alternating name and body.
    statements: dict[str, Statement] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in statements:
            raise ValueError(f"statement {name!r} is defined twice in {source}")
        statements[name] = compile_statement(name, body.strip())
    return statements


def _load(source: str) -> dict[str, Statement]:
    return parse_statements(files(__package__).joinpath(source).read_text(), source=source)


QUERIES: Final[dict[str, Statement]] = _load("queries.sql")
KEY_QUERIES: Final[dict[str, Statement]] = _load("keys.sql")
FLEET_QUERIES: Final[dict[str, Statement]] = _load("fleet.sql")
LISTING_QUERIES: Final[dict[str, Statement]] = _load("listing.sql")
# Enqueueing with idempotency and unique keys (queue_core.keyed).
KEYED_QUERIES: Final[dict[str, Statement]] = _load("keyed.sql")
# Deleting finished jobs past their retention (queue_core.retention).
RETENTION_QUERIES: Final[dict[str, Statement]] = _load("retention.sql")
# Periodic jobs: the schedules table and the jobs of their ticks (queue_core.schedules).
SCHEDULE_QUERIES: Final[dict[str, Statement]] = _load("schedules.sql")
# Jobs with limits per key or dependencies (queue_core.gated, queue_core.dependencies).
GATED_QUERIES: Final[dict[str, Statement]] = _load("gated.sql")
