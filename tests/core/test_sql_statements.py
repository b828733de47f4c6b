"""The compiler of named parameters (queue_core.sql): ``:name`` becomes ``$n`` in code and
nowhere else, a name used twice is one ``$n``, a call must give exactly the statement's names,
and a leftover positional ``$n`` is refused at load. Then the shipped statements: no ``$n`` left
in their files, and the mappings that callers build name exactly their parameters. Pure, so no
database."""

import re
from collections.abc import Sequence
from importlib.resources import files

import pytest

from queue_core import sql
from queue_core.jobs import NewJob
from queue_core.keyed import first_row, job_columns, key_columns
from queue_core.keys import NO_LIMITS
from queue_core.retention import Q_DELETE_BATCH, RETAINED_STATUSES
from queue_core.sql import (
    GATED_QUERIES,
    KEY_QUERIES,
    KEYED_QUERIES,
    QUERIES,
    RETENTION_QUERIES,
    Statement,
    compile_statement,
    parse_statements,
)


def test_parameters_are_numbered_in_order_of_first_use() -> None:
    statement = compile_statement("s", "SELECT :b + :a WHERE x = :b OR y = :c")

    assert statement.text == "SELECT $1 + $2 WHERE x = $1 OR y = $3"
    assert statement.params == ("b", "a", "c")
    assert statement.name == "s"


def test_casts_are_left_alone() -> None:
    statement = compile_statement(
        "casts", "SELECT :ids::uuid[], x::text, CAST(:n AS int), y :: int, :when::timestamptz"
    )

    assert (
        statement.text == "SELECT $1::uuid[], x::text, CAST($2 AS int), y :: int, $3::timestamptz"
    )
    assert statement.params == ("ids", "n", "when")


def test_comments_are_left_alone() -> None:
    sql = (
        "-- takes :not_this or $1\n"
        "SELECT :a -- nor :this, $2\n"
        "     + /* :nor_this $3 /* nested :x */ still :comment */ :b"
    )

    statement = compile_statement("comments", sql)

    assert statement.text == (
        "-- takes :not_this or $1\n"
        "SELECT $1 -- nor :this, $2\n"
        "     + /* :nor_this $3 /* nested :x */ still :comment */ $2"
    )
    assert statement.params == ("a", "b")


def test_strings_identifiers_and_dollar_quotes_are_left_alone() -> None:
    sql = (
        "SELECT 'it''s :x and $1', E'a \\' :y $2', \"odd :z \"\" col\", :real, "
        "$$ :w $3 $$, $fn$ :v ' $4 $fn$, "
        "jsonb_path_query_array(e, '$[last - $keep + 1 to last]',"
        " jsonb_build_object('keep', :keep))"
    )

    statement = compile_statement("literals", sql)

    assert statement.text == (
        "SELECT 'it''s :x and $1', E'a \\' :y $2', \"odd :z \"\" col\", $1, "
        "$$ :w $3 $$, $fn$ :v ' $4 $fn$, "
        "jsonb_path_query_array(e, '$[last - $keep + 1 to last]',"
        " jsonb_build_object('keep', $2))"
    )
    assert statement.params == ("real", "keep")


def test_what_only_looks_like_a_parameter_is_left_alone() -> None:
    # An array slice's bounds, named notation, a colon in the middle of a word.
    sql = "SELECT a[lo:hi], a[1:2], f(x := 1), make_interval(secs => :s), 'x':: text"

    statement = compile_statement("lookalikes", sql)

    assert (
        statement.text
        == "SELECT a[lo:hi], a[1:2], f(x := 1), make_interval(secs => $1), 'x':: text"
    )
    assert statement.params == ("s",)


def test_a_statement_without_parameters_is_unchanged() -> None:
    sql = "SELECT 1 -- :nothing"

    statement = compile_statement("ping", sql)

    assert statement.text == sql
    assert statement.params == ()
    assert statement.args() == ()


def test_args_are_in_parameter_order_whatever_the_keyword_order() -> None:
    statement = compile_statement("s", "SELECT :c, :a, :b, :a")

    assert statement.args(a=1, b=2, c=3) == (3, 1, 2)
    assert statement.args(b=[2], c=None, a="x") == (None, "x", [2])
    assert compile_statement("one", "SELECT :only").args(only=(1,)) == ((1,),)


def test_a_missing_parameter_raises_naming_the_statement_and_the_name() -> None:
    statement = compile_statement("claim", "SELECT :worker_id, :queues, :limit")

    with pytest.raises(TypeError, match=r"'claim'.*missing queues, limit") as raised:
        statement.args(worker_id="w")
    assert "unknown" not in str(raised.value)


def test_an_unknown_parameter_raises_naming_the_statement_and_the_name() -> None:
    statement = compile_statement("claim", "SELECT :worker_id")

    with pytest.raises(TypeError, match=r"'claim'.*unknown lease_s, limit"):
        statement.args(worker_id="w", limit=1, lease_s=2.0)
    with pytest.raises(TypeError, match=r"'ping'.*unknown x.*no parameters"):
        compile_statement("ping", "SELECT 1").args(x=1)


def test_missing_and_unknown_together_are_both_named() -> None:
    statement = compile_statement("finish", "SELECT :job_ids, :worker_id")

    with pytest.raises(TypeError, match=r"'finish': missing worker_id; unknown worker"):
        statement.args(job_ids=[], worker=1)


class _RecordingDb:
    """Something with asyncpg's method shapes, that says what it was asked to run."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, tuple[object, ...]]] = []

    async def fetch(self, query: str, *args: object) -> Sequence[str]:
        self.calls.append(("fetch", query, args))
        return ["row"]

    async def fetchrow(self, query: str, *args: object) -> str | None:
        self.calls.append(("fetchrow", query, args))
        return None

    async def fetchval(self, query: str, *args: object) -> int:
        self.calls.append(("fetchval", query, args))
        return 7

    async def execute(self, query: str, *args: object) -> str:
        self.calls.append(("execute", query, args))
        return "UPDATE 1"


async def test_each_method_runs_the_compiled_text_with_positional_arguments() -> None:
    statement = compile_statement("s", "SELECT :b::int, :a")
    db = _RecordingDb()

    assert await statement.fetch(db, a=1, b=2) == ["row"]
    assert await statement.fetchrow(db, a=3, b=4) is None
    assert await statement.fetchval(db, b=6, a=5) == 7
    assert await statement.execute(db, a=7, b=8) == "UPDATE 1"

    assert db.calls == [
        ("fetch", "SELECT $1::int, $2", (2, 1)),
        ("fetchrow", "SELECT $1::int, $2", (4, 3)),
        ("fetchval", "SELECT $1::int, $2", (6, 5)),
        ("execute", "SELECT $1::int, $2", (8, 7)),
    ]


async def test_a_bad_call_runs_nothing() -> None:
    db = _RecordingDb()

    with pytest.raises(TypeError, match="'s'"):
        await compile_statement("s", "SELECT :a").execute(db, b=1)
    assert db.calls == []


async def test_a_parameter_may_be_called_db_or_self() -> None:
    db = _RecordingDb()

    await compile_statement("s", "SELECT :db, :self").execute(db, db=1, self=2)

    assert db.calls == [("execute", "SELECT $1, $2", (1, 2))]


def test_a_leftover_positional_parameter_is_refused_at_load() -> None:
    text = "-- name: fine\nSELECT :a;\n\n-- name: stale\nSELECT :a, $2;\n"

    with pytest.raises(ValueError, match=r"'stale'.*positional parameter \$2"):
        parse_statements(text, source="test.sql")


def test_a_positional_parameter_alone_is_refused() -> None:
    with pytest.raises(ValueError, match=r"'old'.*\$1"):
        compile_statement("old", "SELECT * FROM jobs WHERE id = $1")


@pytest.mark.parametrize(
    ("sql", "error"),
    [
        ("SELECT :Worker", r"'bad'.*:Worker is not lower_snake_case"),
        ("SELECT 'open", r"'bad'.*unterminated ' quote"),
        ('SELECT "open', r"'bad'.*unterminated \" quote"),
        ("SELECT $$ open", r"'bad'.*unterminated \$\$ quote"),
        ("SELECT /* open /* nested */", r"'bad'.*unterminated /\* comment"),
    ],
)
def test_malformed_statements_are_refused(sql: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        compile_statement("bad", sql)


def test_a_file_parses_into_compiled_statements_by_name() -> None:
    text = (
        "-- The preamble, with :no_parameter.\n\n"
        "-- name: first\n-- About :x.\nSELECT :x, :y, :x;\n\n"
        "-- name: second\nSELECT 1;\n"
    )

    statements = parse_statements(text, source="test.sql")

    assert statements == {
        "first": Statement("first", "-- About :x.\nSELECT $1, $2, $1;", ("x", "y")),
        "second": Statement("second", "SELECT 1;", ()),
    }


def test_a_statement_defined_twice_is_refused() -> None:
    text = "-- name: twice\nSELECT 1;\n-- name: twice\nSELECT 2;\n"

    with pytest.raises(ValueError, match=r"'twice' is defined twice in test\.sql"):
        parse_statements(text, source="test.sql")


def test_a_statement_is_frozen() -> None:
    statement = compile_statement("s", "SELECT :a")

    with pytest.raises(AttributeError):
        statement.text = "DELETE FROM jobs"  # type: ignore[misc]


def test_the_shipped_files_name_no_positional_parameter_even_in_comments() -> None:
    sql_files = [f for f in files(sql).iterdir() if f.name.endswith(".sql")]

    assert len(sql_files) == 8
    for sql_file in sql_files:
        text = sql_file.read_text()
        assert not re.findall(r"\$[0-9]", text), sql_file.name
        parse_statements(text, source=sql_file.name)  # loads: every :name well formed


def test_the_inserts_of_jobs_take_the_columns_their_callers_build() -> None:
    jobs = [NewJob(type="a", payload={"n": 1}), NewJob(type="b", payload={}, queue="q")]
    columns = job_columns(jobs)
    keys = key_columns(jobs)

    assert set(QUERIES["enqueue_many"].params) == set(columns)
    assert set(QUERIES["enqueue_one"].params) == set(first_row(columns))
    assert set(KEYED_QUERIES["enqueue_keyed_many"].params) == set(columns | keys)
    assert set(KEYED_QUERIES["enqueue_keyed"].params) == set(columns | keys) | {
        "concurrency_key",
        "waiting_for",
    }
    assert set(GATED_QUERIES["enqueue_gated"].params) == set(columns) | {
        "concurrency_key",
        "waiting_for",
    }
    assert columns["type"] == ["a", "b"]
    assert columns["payload"] == ['{"n": 1}', "{}"]
    assert columns["queue"][1] == "q"
    assert len(set(columns["id"])) == 2
    assert first_row(columns)["type"] == "a"


def test_a_key_s_limits_are_the_parameters_of_its_statements() -> None:
    limits = set(NO_LIMITS.columns())

    assert limits == set(KEY_QUERIES["set_api_key_limits"].params) - {"name_or_prefix"}
    assert limits < set(KEY_QUERIES["create_api_key"].params)


def test_retention_puts_each_status_in_as_a_literal_and_keeps_the_parameters() -> None:
    template = RETENTION_QUERIES["delete_finished_batch"]

    assert "{status}" in template.text
    assert "status" not in template.params
    for status in RETAINED_STATUSES:
        statement = Q_DELETE_BATCH[status]
        assert "{status}" not in statement.text
        assert f"WHERE status = '{status.value}'" in statement.text
        assert statement.params == template.params
        assert statement.args(retention_s=60.0, batch=10, from_id=None, clock_slack_s=60.0) == (
            template.args(retention_s=60.0, batch=10, from_id=None, clock_slack_s=60.0)
        )
