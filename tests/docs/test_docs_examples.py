"""Every code example of the documentation site runs here, so none of them rots.

The pages hold no Python of their own: each ``python`` block is a pymdownx.snippets include of
a section of a file in docs/examples, and those files run below against a real PostgreSQL, a
real queue-api and a real queue-worker that loads the docs' handlers."""

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e.stack import Stack
from pg_provider import run_sync
from queue_client import Client

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = REPO_ROOT / "docs"
EXAMPLES = DOCS / "examples"
# The example files, each run by a test of this module.
RUN_HERE = {"handlers.py", "first_job.py", "client_tour.py", "transaction.py"}
FENCE = re.compile(r"^```+\s*(?P<info>[^\n]*)\n(?P<body>.*?)^```+\s*$", re.MULTILINE | re.DOTALL)
PYTHON_INFO = re.compile(r"^(python|py|python3|\{\s*\.(python|py)\b.*\})", re.IGNORECASE)
INCLUDE = re.compile(r'^--8<-- "docs/examples/(?P<file>[\w.]+)(?::(?P<section>[\w-]+))?"$')


@dataclass(frozen=True)
class DocsSystem:
    url: str
    key: str
    database_url: str


@pytest.fixture(name="docs_system")
def fx_docs_system(db_url: str, tmp_path: Path) -> Iterator[DocsSystem]:
    stack = Stack(tmp_path)
    try:
        api = stack.spawn_api(db_url)
        worker = stack.spawn_worker(
            db_url,
            "worker",
            {
                "PYTHONPATH": f"{EXAMPLES}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                "WORKER_TASKS": "queue_worker.builtin_tasks,handlers",
                "WORKER_QUEUES": "default,emails",
            },
        )
        stack.wait_ready(api, worker)
        assert api.key is not None
        yield DocsSystem(api.base_url, api.key, db_url)
    finally:
        stack.stop_all()


def _run_example(name: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, f"{name} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _python_blocks() -> Iterator[tuple[Path, str]]:
    for page in sorted(DOCS.rglob("*.md")):
        for fence in FENCE.finditer(page.read_text()):
            if PYTHON_INFO.match(fence["info"].strip()):
                yield page, fence["body"]


def test_every_python_block_is_included_from_an_example_run_here() -> None:
    blocks = list(_python_blocks())
    assert len(blocks) >= 7, "the pages' examples were not found"
    for page, body in blocks:
        where = page.relative_to(REPO_ROOT)
        lines = body.strip().splitlines()
        assert len(lines) == 1, f"{where}: Python written in the page, not included: {body}"
        include = INCLUDE.match(lines[0])
        assert include, f"{where}: {lines[0]} is not an include of docs/examples"
        assert include["file"] in RUN_HERE, f"{where}: {include['file']} is run by no test"
        if include["section"]:
            text = (EXAMPLES / include["file"]).read_text()
            assert f"[start:{include['section']}]" in text, f"{where}: no {include['section']}"


def test_the_first_job_is_completed_by_the_first_handler(docs_system: DocsSystem) -> None:
    out = _run_example(
        "first_job.py", {"QUEUE_URL": docs_system.url, "QUEUE_API_KEY": docs_system.key}
    )
    assert out.strip() == "completed {'greeting': 'Hello, Ada!'}"


def test_the_handlers_do_what_their_pages_say(docs_system: DocsSystem) -> None:
    with Client(docs_system.url, docs_system.key) as queue:
        resized = queue.enqueue("resize_image", {"url": "https://example.com/a.png"}).job
        refused = queue.enqueue("resize_image", {"size": 64}, max_attempts=5).job
        report = queue.enqueue("legacy_report", {"month": "2026-11"}).job
        charge = queue.enqueue("charge_card", {"customer": "c1", "amount": 100}).job
        resized_done = queue.wait(resized.id, timeout_s=30)
        refused_done = queue.wait(refused.id, timeout_s=30)
        report_done = queue.wait(report.id, timeout_s=30)
        charge_done = queue.wait(charge.id, timeout_s=30)
    assert resized_done.status == "completed"
    assert resized_done.result == {"thumbnail": "https://example.com/a.png.thumb.png"}
    # PermanentError: failed at once, with attempts left.
    assert refused_done.status == "failed"
    assert refused_done.attempts == 1
    assert refused_done.error_message is not None
    assert "payload.url is required" in refused_done.error_message
    assert report_done.status == "completed"
    assert charge_done.status == "completed"


def test_the_client_tour_runs(docs_system: DocsSystem) -> None:
    out = _run_example(
        "client_tour.py", {"QUEUE_URL": docs_system.url, "QUEUE_API_KEY": docs_system.key}
    )
    assert out.strip() == "completed"
    with Client(docs_system.url, docs_system.key) as queue:
        (emails,) = [q for q in queue.list_queues() if q.name == "emails"]
    assert emails.paused


async def _rows(database_url: str) -> tuple[list[int], list[tuple[str, str]]]:
    import asyncpg  # noqa: PLC0415 - only this test reads the tables directly

    conn = await asyncpg.connect(database_url)
    try:
        orders = [r["id"] for r in await conn.fetch("SELECT id FROM orders ORDER BY id")]
        jobs = [
            (r["type"], r["k"])
            for r in await conn.fetch(
                "SELECT type, coalesce(unique_key, payload->>'order') AS k FROM jobs ORDER BY type"
            )
        ]
    finally:
        await conn.close()
    return orders, jobs


def test_enqueue_in_a_transaction_commits_and_rolls_back_with_it(db_url: str) -> None:
    _run_example("transaction.py", {"DATABASE_URL": db_url})
    orders, jobs = run_sync(_rows(db_url))
    assert orders == [42], "order 43 was rolled back"
    assert jobs == [("send_email", "welcome:7"), ("ship_order", "42")]


def _first_job_commands(page: Path) -> list[str]:
    """The shell commands of the page's console block that drives the system (the one that
    exports QUEUE_URL), continuation lines joined; `queuectl watch` is interactive: left out."""
    for fence in FENCE.finditer(page.read_text()):
        body = fence["body"]
        if fence["info"].strip() == "console" and "$ export QUEUE_URL" in body:
            joined = body.replace("\\\n", " ")
            return [
                line.removeprefix("$ ")
                for line in joined.splitlines()
                if line.startswith("$ ") and "export " not in line and " watch" not in line
            ]
    raise AssertionError(f"{page}: no console block exports QUEUE_URL")


def test_the_first_job_commands_run(docs_system: DocsSystem) -> None:
    commands = _first_job_commands(DOCS / "getting-started.md")
    assert len(commands) >= 3
    env = {**os.environ, "QUEUE_URL": docs_system.url, "QUEUE_API_KEY": docs_system.key}
    for command in commands:
        done = subprocess.run(
            ["bash", "-c", f"set -o pipefail; {command}"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        if command.startswith("curl"):
            # The job as stored, read back after the insert: the running worker may have taken
            # it (or even finished it) in between, so any of these is right; anything else not.
            answer = json.loads(done.stdout)
            assert answer["type"] == "send_email", done.stdout
            assert answer["status"] in {"pending", "running", "completed"}, done.stdout


def test_the_readmes_first_job_is_the_one_run_here() -> None:
    readme = _first_job_commands(REPO_ROOT / "README.md")
    assert readme == _first_job_commands(DOCS / "getting-started.md")
