"""load_settings: a bad environment ends the process with status 2 and one line naming the
variable, never a traceback. Exercised on the worker's settings, the richest of them."""

import pytest

from helpers import run_script
from queue_core.settings import load_settings
from queue_worker.settings import DEFAULT_TASK_MODULES, SmtpSettings, WorkerSettings

GOOD_URL = "postgresql://queue:secret@db.example:5432/queue"
VARIABLES = (
    "DATABASE_URL",
    "LOG_LEVEL",
    "LOG_FORMAT",
    *(f"WORKER_{name.upper()}" for name in WorkerSettings.model_fields if name != "database_url"),
    *(f"SMTP_{name.upper()}" for name in SmtpSettings.model_fields),
)


@pytest.fixture(autouse=True)
def fx_clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: nothing leaks in from the shell that runs pytest."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", GOOD_URL)


def _refused(capsys: pytest.CaptureFixture[str]) -> str:
    """Load the worker's settings, expecting exit status 2; return the one stderr line."""
    with pytest.raises(SystemExit) as exited:
        load_settings(WorkerSettings)
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.endswith("\n")
    assert err.count("\n") == 1, f"expected one line, got {err!r}"
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WORKER_CONCURRENCY", "0"),
        ("WORKER_CONCURRENCY", "-3"),
        ("WORKER_CONCURRENCY", "abc"),
        ("WORKER_POLL_INTERVAL_S", "0"),
        ("WORKER_SHUTDOWN_GRACE_S", "soon"),
        ("WORKER_LEASE_S", "-1"),
        ("WORKER_METRICS_PORT", "70000"),
        ("WORKER_QUEUES", ""),
        ("WORKER_QUEUES", " , ,"),
        ("WORKER_TASKS", ","),
        ("WORKER_DB_POOL_SIZE", "0"),
        ("DATABASE_URL", "mysql://x"),
        ("DATABASE_URL", "not a url"),
        ("LOG_LEVEL", "LOUD"),
        ("LOG_FORMAT", "xml"),
    ],
)
def test_a_bad_value_exits_2_with_one_line_naming_the_variable(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(variable, value)

    line = _refused(capsys)

    assert line.startswith(f"invalid configuration: {variable}: ")


def test_a_missing_database_url_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL")

    assert _refused(capsys).startswith("invalid configuration: DATABASE_URL: ")


def test_several_bad_values_are_named_on_the_same_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setenv("WORKER_CONCURRENCY", "0")

    line = _refused(capsys)

    assert "DATABASE_URL: " in line
    assert "WORKER_CONCURRENCY: " in line


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"WORKER_RETRY_BASE_S": "10", "WORKER_RETRY_CAP_S": "1"}, "WORKER_RETRY_CAP_S"),
        ({"WORKER_LEASE_S": "5", "WORKER_HEARTBEAT_S": "5"}, "WORKER_LEASE_S"),
    ],
)
def test_inconsistent_values_are_refused_naming_the_variable(
    values: dict[str, str],
    named: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)

    assert named in _refused(capsys)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:p@h:5432/db",
        "postgres://u:p@h:5432/db",
        "postgresql+asyncpg://u:p@h:5432/db",
    ],
)
def test_database_url_accepts_the_three_spellings_and_normalises_them(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)

    assert load_settings(WorkerSettings).database_url == "postgresql://u:p@h:5432/db"


def test_the_defaults() -> None:
    settings = load_settings(WorkerSettings)

    assert settings.database_url == GOOD_URL
    assert settings.concurrency == 10
    assert settings.queues == ("default",)
    assert settings.tasks == DEFAULT_TASK_MODULES == ("queue_worker.builtin_tasks",)
    assert settings.poll_interval_s == 1.0
    assert settings.lease_s == 30.0
    assert settings.pool_size == 10


def test_queues_and_tasks_are_comma_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_QUEUES", " emails, reports,,default ")
    monkeypatch.setenv("WORKER_TASKS", "myapp.tasks,queue_worker.builtin_tasks")
    monkeypatch.setenv("WORKER_CONCURRENCY", "3")

    settings = load_settings(WorkerSettings)

    assert settings.queues == ("emails", "reports", "default")
    assert settings.tasks == ("myapp.tasks", "queue_worker.builtin_tasks")
    assert settings.concurrency == 3
    assert settings.pool_size == 5


def test_a_single_queue_needs_no_comma(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_QUEUES", "emails")

    assert load_settings(WorkerSettings).queues == ("emails",)


def test_the_settings_are_frozen() -> None:
    settings = load_settings(WorkerSettings)

    with pytest.raises(ValueError, match="frozen"):
        settings.concurrency = 2  # type: ignore[misc]


def test_the_worker_script_refuses_a_bad_value_with_one_line() -> None:
    result = run_script(
        ["queue-worker"],
        env={"DATABASE_URL": GOOD_URL, "WORKER_CONCURRENCY": "0"},
        timeout_s=30,
    )

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("invalid configuration: WORKER_CONCURRENCY: ")
