"""``queue-migrate`` as a deploy runs it: a one-shot process, possibly several at once."""

import subprocess

import pytest
from alembic.script import ScriptDirectory

from e2e.stack import Stack, closed_port_url, fetch
from helpers import run_script
from queue_core.migrate import alembic_config

pytestmark = pytest.mark.e2e


def _head(database_url: str) -> str:
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    assert head is not None
    return head


def _tables(database_url: str) -> set[str]:
    rows = fetch(database_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {row["tablename"] for row in rows}


def _versions(database_url: str) -> list[str]:
    return [
        row["version_num"] for row in fetch(database_url, "SELECT version_num FROM alembic_version")
    ]


def _describe(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def test_migrate_creates_the_schema_on_an_empty_database(empty_db_url: str) -> None:
    result = run_script(["queue-migrate"], {"DATABASE_URL": empty_db_url, "LOG_FORMAT": "json"})

    assert result.returncode == 0, _describe(result)
    assert {"jobs", "alembic_version"} <= _tables(empty_db_url), _describe(result)
    assert _versions(empty_db_url) == [_head(empty_db_url)]


def test_three_concurrent_migrates_all_succeed_and_leave_one_version_row(
    stack: Stack, empty_db_url: str
) -> None:
    procs = [
        stack.spawn(f"migrate-{n}", ["queue-migrate"], {"DATABASE_URL": empty_db_url})
        for n in range(3)
    ]

    codes: list[int | None] = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout_s=60))
        except subprocess.TimeoutExpired:
            codes.append(None)

    assert codes == [0, 0, 0], stack.logs()
    # Under the advisory lock the first one migrates; the others then find the schema at head.
    upgraders = [proc.name for proc in procs if "Running upgrade" in proc.output()]
    assert len(upgraders) == 1, f"{upgraders} ran the migrations\n{stack.logs()}"
    assert _versions(empty_db_url) == [_head(empty_db_url)], stack.logs()
    assert "jobs" in _tables(empty_db_url)


def test_migrate_against_an_unreachable_database_fails_with_a_short_line() -> None:
    result = run_script(
        ["queue-migrate"], {"DATABASE_URL": closed_port_url(), "LOG_FORMAT": "json"}
    )

    output = result.stdout + result.stderr
    assert result.returncode != 0, _describe(result)
    assert "Traceback" not in output, _describe(result)
    lines = output.strip().splitlines()
    assert len(lines) == 1, _describe(result)
    assert "migrate_failed" in lines[0], _describe(result)
    assert len(lines[0]) < 400, _describe(result)


def test_migrate_with_a_bad_database_url_scheme_exits_2_naming_the_variable() -> None:
    result = run_script(["queue-migrate"], {"DATABASE_URL": "mysql://root@127.0.0.1/jobs"})

    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2, _describe(result)
    assert len(output.splitlines()) == 1, _describe(result)
    assert "DATABASE_URL" in output, _describe(result)
    assert "Traceback" not in output, _describe(result)
