"""``queuectl`` as a user runs it: the installed console script, as a child process, against the
real API and worker; JSON output read back, exit codes and one-line errors checked."""

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from client.conftest import System
from helpers import BIN
from queue_client import NO_RETRY, Client, ConnectionFailedError
from queue_devtools.pgcluster import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(name="home")
def fx_home(tmp_path: Path) -> Path:
    """An empty XDG_CONFIG_HOME: no user's config file leaks into a test."""
    return tmp_path


def queuectl(
    *args: str,
    url: str | None,
    key: str | None,
    home: Path,
    stdin: str = "",
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": "/usr/bin:/bin", "XDG_CONFIG_HOME": str(home), "COLUMNS": "200"}
    if url is not None:
        environment["QUEUE_URL"] = url
    if key is not None:
        environment["QUEUE_API_KEY"] = key
    return subprocess.run(
        [str(BIN / "queuectl"), *args],
        env={**environment, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("queuectl: error: "), lines[0]
    return lines[0]


def test_enqueue_wait_status_and_list(system: System, home: Path, tmp_path: Path) -> None:
    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return queuectl(*args, url=system.url, key=system.key, home=home, stdin=stdin)

    done = ok_json(
        run("enqueue", "answer", "--payload", '{"q": "cli"}', "--wait", "20", "-o", "json")
    )
    assert done["outcome"] == "created"
    assert done["job"]["status"] == "completed"
    assert done["job"]["result"] == {"answer": 42, "echo": "cli"}
    job_id = done["job"]["id"]

    status = ok_json(run("status", job_id, "--output", "json"))
    assert (status["id"], status["type"], status["status"]) == (job_id, "answer", "completed")
    listed = ok_json(
        run("list", "--type", "answer", "--status", "completed", "--since", "1h", "-o", "json")
    )
    assert job_id in [job["id"] for job in listed]

    queue = f"q-{uuid.uuid4().hex[:8]}"
    payload_file = tmp_path / "payload.json"
    payload_file.write_text('{"from": "file"}')
    from_file = ok_json(run("enqueue", "noop", "-p", f"@{payload_file}", "-q", queue, "--at", "+1h",
                            "--priority", "7", "--max-attempts", "2", "-o", "json"))  # fmt: skip
    assert from_file["job"]["payload"] == {"from": "file"}
    assert from_file["job"]["scheduled_at"] is not None
    assert (from_file["job"]["priority"], from_file["job"]["max_attempts"]) == (7, 2)
    from_stdin = ok_json(
        run("enqueue", "noop", "-p", "@-", "-q", queue, "-o", "json", stdin='{"a": 1}')
    )
    assert from_stdin["job"]["payload"] == {"a": 1}
    keyed = [
        ok_json(
            run(
                "enqueue",
                "noop",
                "-p",
                '{"k": 1}',
                "-q",
                queue,
                "--idempotency-key",
                "cli-1",
                "-o",
                "json",
            )
        )
        for _ in range(2)
    ]
    assert [k["outcome"] for k in keyed] == ["created", "replayed"]
    assert keyed[0]["job"]["id"] == keyed[1]["job"]["id"]
    assert len(ok_json(run("list", "-q", queue, "-o", "json"))) == 3
    assert len(ok_json(run("list", "-q", queue, "--limit", "2", "-o", "json"))) == 2

    table = run("list", "-q", queue)
    assert table.returncode == 0, table.stderr
    assert "TYPE" in table.stdout
    assert "3 job(s)" in table.stdout
    assert from_stdin["job"]["id"] in table.stdout
    detail = run("status", job_id)
    assert "completed" in detail.stdout
    assert '"answer": 42' in detail.stdout


def test_cancel_and_retry_by_id_and_in_bulk(system: System, home: Path, client: Client) -> None:
    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return queuectl(*args, url=system.url, key=system.key, home=home, stdin=stdin)

    queue = f"q-{uuid.uuid4().hex[:8]}"
    ids = [client.enqueue("noop", {"i": i}, queue=queue).job.id for i in range(3)]

    one = ok_json(run("cancel", str(ids[0]), "-o", "json"))
    assert (one["id"], one["status"]) == (str(ids[0]), "cancelled")
    assert ok_json(run("retry", str(ids[0]), "-o", "json"))["status"] == "pending"
    assert "cancelled" in run("cancel", str(ids[0])).stdout  # the table: the job as it is now
    assert "pending" in run("retry", str(ids[0])).stdout

    declined = run("cancel", "--queue", queue, stdin="n\n")
    assert declined.returncode == 1
    assert "Cancel 3 job(s)?" in declined.stderr
    assert "aborted, nothing changed" in declined.stderr
    no_terminal = run("cancel", "--queue", queue)  # no answer at all: declined too
    assert no_terminal.returncode == 1
    assert {job.status for job in client.iter_jobs(queue=queue)} == {"pending"}

    confirmed = run("cancel", "--queue", queue, "--type", "noop", "-o", "json", stdin="y\n")
    assert ok_json(confirmed) == {"affected": 3}
    assert ok_json(run("retry", "-q", queue, "--limit", "2", "--yes", "-o", "json")) == {
        "affected": 2
    }
    nothing = run("retry", "-q", queue, "--status", "failed", "-o", "json")
    assert ok_json(nothing) == {"affected": 0}
    assert "no job to retry matches" in nothing.stderr

    assert run("cancel", str(ids[0]), "--queue", queue).returncode == 2
    bare = run("cancel")
    assert bare.returncode == 2
    assert "give a job ID, or filters" in bare.stderr


def test_queues_workers_schedules_and_keys(system: System, home: Path, client: Client) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return queuectl(*args, url=system.url, key=system.key, home=home)

    queue = f"q-{uuid.uuid4().hex[:8]}"
    client.enqueue("noop", {"a": 1}, queue=queue)
    assert ok_json(run("pause", queue, "-o", "json"))["paused"] is True
    listed = {q["name"]: q for q in ok_json(run("queues", "-o", "json"))}
    assert listed[queue]["paused"] is True
    assert listed[queue]["due"] == 1
    table = run("queues")
    assert queue in table.stdout
    assert "paused" in table.stdout
    assert ok_json(run("resume", queue, "-o", "json"))["paused"] is False

    (worker,) = ok_json(run("workers", "-o", "json"))
    assert worker["pid"] == system.worker.proc.pid
    assert str(system.worker.proc.pid) in run("workers").stdout

    (schedule,) = ok_json(run("schedules", "-o", "json"))
    assert schedule["name"] == "hourly_report"
    assert ok_json(run("schedules", "pause", "hourly_report", "-o", "json"))["paused"] is True
    assert ok_json(run("schedules", "resume", "hourly_report", "-o", "json"))["paused"] is False
    assert "hourly_report" in run("schedules").stdout

    name = f"cli-{uuid.uuid4().hex[:6]}"
    created = ok_json(
        run("keys", "create", name, "--scope", "jobs:read", "--queue", queue, "-o", "json")
    )
    assert created["key"].startswith("tq_")
    assert created["queues"] == [queue]
    assert name in [k["name"] for k in ok_json(run("keys", "list", "-o", "json"))]
    reader = queuectl("queues", "-o", "json", url=system.url, key=created["key"], home=home)
    assert [q["name"] for q in ok_json(reader)] == [queue]  # a queue-bound key sees its own
    assert ok_json(run("keys", "revoke", name, "-o", "json"))["revoked_at"] is not None
    assert name in run("keys", "list").stdout


def test_exit_codes_and_one_line_errors(system: System, home: Path) -> None:
    missing = queuectl("status", str(uuid.uuid4()), url=system.url, key=system.key, home=home)
    assert "404" in one_line_error(missing, 3)

    wrong_key = queuectl("queues", url=system.url, key="tq_wrongkey_" + "x" * 32, home=home)
    assert "API key" in one_line_error(wrong_key, 4)
    no_key = queuectl("queues", url=system.url, key=None, home=home)
    assert "401" in one_line_error(no_key, 4)

    down_url = f"http://127.0.0.1:{free_port()}"
    down = queuectl("queues", url=down_url, key=system.key, home=home)
    line = one_line_error(down, 5)
    assert down_url in line
    assert "is the API running" in line

    refused = queuectl("enqueue", "noop", "-p", "{}", url=system.url, key=system.key, home=home)
    assert "payload" in one_line_error(refused, 1)  # the API's 400, with the field
    not_json = queuectl("enqueue", "noop", "-p", "{nope", url=system.url, key=system.key, home=home)
    assert not_json.returncode == 2
    assert "not JSON" in not_json.stderr
    bad_since = queuectl("list", "--since", "soon", url=system.url, key=system.key, home=home)
    assert bad_since.returncode == 2
    assert "Traceback" not in bad_since.stderr + not_json.stderr


def test_wait_exit_codes_tell_a_failure_and_a_timeout_from_a_completion(
    system: System, home: Path, fresh_queue: str
) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return queuectl(*args, "-o", "json", url=system.url, key=system.key, home=home)

    failed = run("enqueue", "fail", "-p", '{"message": "boom"}', "--max-attempts", "1",
                 "--wait", "20")  # fmt: skip
    line = one_line_error(failed, 6)
    job = json.loads(failed.stdout)["job"]  # printed all the same, with its error
    assert job["status"] == "failed"
    assert job["id"] in line
    assert "failed" in line
    # Without --wait, showing a failed job is no error.
    assert ok_json(run("status", job["id"]))["status"] == "failed"
    assert "failed" in one_line_error(run("status", job["id"], "--wait", "5"), 6)

    unserved = run("enqueue", "noop", "-p", '{"a": 1}', "-q", fresh_queue, "--wait", "0.5")
    line = one_line_error(unserved, 7)
    assert json.loads(unserved.stdout)["job"]["status"] == "pending"
    assert "still pending after 0.5 s" in line
    pending_id = json.loads(unserved.stdout)["job"]["id"]
    assert "still pending" in one_line_error(run("status", pending_id, "--wait", "0.5"), 7)


def test_ctrl_c_exits_130_with_one_line(system: System, home: Path, fresh_queue: str) -> None:
    with Client(system.url, system.key) as client:
        job = client.enqueue("noop", {"a": 1}, queue=fresh_queue).job  # nobody serves it
    waiting = subprocess.Popen(
        [str(BIN / "queuectl"), "status", str(job.id), "--wait", "30"],
        env={"PATH": "/usr/bin:/bin", "XDG_CONFIG_HOME": str(home),
             "QUEUE_URL": system.url, "QUEUE_API_KEY": system.key},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(3)  # started and long polling (it would wait 30 s)
        waiting.send_signal(signal.SIGINT)
        _, stderr = waiting.communicate(timeout=20)
    finally:
        waiting.kill()
    assert waiting.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["queuectl: error: interrupted"]


def test_settings_come_from_flags_then_env_then_the_config_file(
    system: System, home: Path, tmp_path: Path
) -> None:
    down_url = f"http://127.0.0.1:{free_port()}"
    default_file = home / "queuectl" / "config.toml"
    default_file.parent.mkdir()
    default_file.write_text(f'url = "{system.url}"\napi_key = "{system.key}"\noutput = "json"\n')
    # The file alone: its URL, key and output.
    assert ok_json(queuectl("workers", url=None, key=None, home=home))[0]["pid"] > 0
    # The environment beats the file ...
    env_wins = queuectl("workers", url=down_url, key=None, home=home)
    assert env_wins.returncode == 5
    # ... and a flag beats the environment.
    flag_wins = queuectl("--url", system.url, "workers", url=down_url, key=None, home=home)
    assert ok_json(flag_wins)[0]["pid"] > 0
    bad_flag_key = queuectl(
        "--api-key", "tq_wrongkey_" + "x" * 32, "workers", url=None, key=system.key, home=home
    )
    assert bad_flag_key.returncode == 4
    # An output flag beats the file's output.
    assert "PID" in queuectl("workers", "-o", "table", url=None, key=None, home=home).stdout

    other = tmp_path / "other.toml"
    other.write_text(f'url = "{down_url}"\n')
    by_env = queuectl("workers", url=None, key=None, home=home, env={"QUEUECTL_CONFIG": str(other)})
    assert by_env.returncode == 5
    by_flag = queuectl("--config", str(other), "workers", url=None, key=None, home=home)
    assert by_flag.returncode == 5

    typo = tmp_path / "typo.toml"
    typo.write_text('apikey = "x"\n')
    assert "unknown key(s) apikey" in one_line_error(
        queuectl("--config", str(typo), "workers", url=None, key=None, home=home), 2
    )
    absent = queuectl(
        "--config", str(tmp_path / "absent.toml"), "workers", url=None, key=None, home=home
    )
    assert "does not exist" in one_line_error(absent, 2)


def test_a_malformed_url_is_a_usage_error(home: Path) -> None:
    for url in ("http://[::1", "http://host:port", "http://", "https:///v1"):
        result = queuectl("queues", url=url, key=None, home=home)
        assert "the API URL" in one_line_error(result, 2), url


def test_what_no_http_header_can_carry_is_a_usage_error(home: Path) -> None:
    """An API key or idempotency key with a character a header cannot carry (a non-breaking
    space or an accent pasted with it, a line break) is refused before anything is sent."""
    url = f"http://127.0.0.1:{free_port()}"
    for key in ("tq_pasted\u00a0", "tq_clé", "tq_two\nlines"):
        result = queuectl("queues", url=url, key=key, home=home)
        line = one_line_error(result, 2)
        assert "API key" in line
        assert "tq_" not in line, "the key is not printed"
    for idempotency_key in ("clé", "two\nlines", " padded", "x" * 256):
        result = queuectl("enqueue", "noop", "-p", '{"a": 1}', "--idempotency-key",
                          idempotency_key, url=url, key=None, home=home)  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert "printable ASCII" in result.stderr
        assert "Traceback" not in result.stderr


def test_a_payload_json_cannot_carry_is_refused_before_sending(home: Path, tmp_path: Path) -> None:
    """A file in UTF-16 (PowerShell's redirection writes it), or numbers JSON has no form for,
    which would be sent as null: usage errors, not a traceback or a changed payload."""
    utf16 = tmp_path / "payload.json"
    utf16.write_text('{"a": 1}', encoding="utf-16")
    url = f"http://127.0.0.1:{free_port()}"
    for payload in (f"@{utf16}", '{"a": NaN}', '{"a": -Infinity}', '{"a": 1e999}'):
        result = queuectl("enqueue", "noop", "-p", payload, url=url, key=None, home=home)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert "Invalid value" in result.stderr, result.stderr


def test_a_password_in_the_url_is_never_printed(home: Path) -> None:
    """A proxy's basic auth in the URL (https://user:password@host) is a secret like the key."""
    url = f"http://ops:s3cret@127.0.0.1:{free_port()}"
    down = queuectl("queues", url=url, key="tq_secret_" + "x" * 32, home=home)
    line = one_line_error(down, 5)
    assert "s3cret" not in line
    assert "tq_secret_" not in line
    assert "127.0.0.1" in line
    with Client(url, retry=NO_RETRY) as client:
        assert "s3cret" not in client.base_url
        with pytest.raises(ConnectionFailedError) as failed:
            client.list_queues()
    assert "s3cret" not in str(failed.value)


def test_shell_completion(home: Path) -> None:
    script = queuectl("completion", "bash", url=None, key=None, home=home)
    assert script.returncode == 0
    assert "_QUEUECTL_COMPLETE=bash_complete" in script.stdout
    completed = queuectl(
        url=None, key=None, home=home,
        env={"_QUEUECTL_COMPLETE": "bash_complete", "COMP_WORDS": "queuectl ke", "COMP_CWORD": "1"},
    )  # fmt: skip
    assert completed.returncode == 0
    assert "keys" in completed.stdout
    words = {"COMP_WORDS": "queuectl list --st", "COMP_CWORD": "2"}
    options = queuectl(
        url=None, key=None, home=home, env={"_QUEUECTL_COMPLETE": "bash_complete", **words}
    )
    assert "--status" in options.stdout


def test_enqueue_with_a_concurrency_key_and_dependencies(system: System, home: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return queuectl(*args, url=system.url, key=system.key, home=home)

    key = f"tenant:{uuid.uuid4().hex[:8]}"
    parent = ok_json(run("enqueue", "noop", "-p", '{"n": 1}', "--at", "+1h", "-o", "json"))["job"]
    child = ok_json(run("enqueue", "noop", "-p", '{"n": 2}', "--concurrency-key", key,
                        "--concurrency-limit", "2", "--rate-limit", "5", "--rate-burst", "2",
                        "--depends-on", parent["id"], "-o", "json"))["job"]  # fmt: skip
    assert child["concurrency_key"] == key
    assert child["waiting_for"] == 1
    assert child["depends_on"] == [{"id": parent["id"], "status": "pending", "completed": False}]
    table = run("status", child["id"])
    assert table.returncode == 0, table.stderr
    assert key in table.stdout

    no_key = run("enqueue", "noop", "-p", '{"n": 3}', "--concurrency-limit", "2")
    assert no_key.returncode == 2
    too_big = run("enqueue", "noop", "-p", '{"n": 3}', "--concurrency-key", key,
                  "--concurrency-limit", "10001")  # fmt: skip
    assert too_big.returncode == 2
    unknown = run("enqueue", "noop", "-p", '{"n": 3}', "--depends-on", str(uuid.uuid4()))
    assert "do not exist" in one_line_error(unknown, 1)


def test_tables_show_the_tenants_text_as_written_not_as_markup(
    system: System, home: Path, client: Client
) -> None:
    """A job's type, queue and error are the tenants' text: rich read "[/x]" in one as a
    closing tag, and the table ended in a MarkupError traceback (and "[bold]" restyled it)."""
    queue = f"q-[bold]{uuid.uuid4().hex[:8]}"
    client.enqueue("[/x]report", {"a": 1}, queue=queue)
    listed = queuectl("list", "--queue", queue, url=system.url, key=system.key, home=home)
    queues = queuectl("queues", url=system.url, key=system.key, home=home)
    for result in (listed, queues):
        assert result.returncode == 0, result.stderr
        assert queue in result.stdout
    assert "[/x]report" in listed.stdout
