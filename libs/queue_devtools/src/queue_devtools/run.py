"""``queue-dev`` (``make run``): the whole system on one machine without Docker.

Starts a throwaway PostgreSQL (unless ``DATABASE_URL`` is set), runs ``queue-migrate``, makes an
admin API key with ``queue-keys`` (printed in the banner), then one ``queue-api`` and one
``queue-worker`` as child processes with their logs on this terminal.
Ctrl-C stops the worker gracefully, then the API, then deletes the throwaway database.
"""

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from queue_devtools.pgcluster import PgCluster

BIN = Path(sys.executable).parent


@contextlib.contextmanager
def _database() -> Iterator[str]:
    if url := os.environ.get("DATABASE_URL"):
        yield url
        return
    cluster = PgCluster.create(durable=True)
    try:
        cluster.start()
        print(f"PostgreSQL (throwaway): {cluster.url()}", flush=True)  # noqa: T201 - a CLI
        yield cluster.url()
    finally:
        cluster.destroy()


def _spawn(script: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(BIN / script)], env=env)


def _create_admin_key(env: dict[str, str]) -> str:
    """An admin key (every scope) made with the real ``queue-keys``, for the banner. Its name
    is unique, so that a ``make run`` on an existing DATABASE_URL adds one rather than failing."""
    name = f"dev-admin-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    scopes = "jobs:write,jobs:read,jobs:admin,queues:admin,keys:admin,metrics:read"
    made = subprocess.run(
        [str(BIN / "queue-keys"), "create", "--name", name, "--scopes", scopes],
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        sys.exit(f"queue-keys create failed: {made.stderr.strip()}")
    return made.stdout.strip().splitlines()[-1]


def main() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with _database() as database_url:
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "LOG_FORMAT": os.environ.get("LOG_FORMAT", "console"),
        }
        env.setdefault("API_PORT", "8080")
        env.setdefault("WORKER_METRICS_PORT", "9464")
        if subprocess.run([str(BIN / "queue-migrate")], env=env, check=False).returncode != 0:
            sys.exit("queue-migrate failed; see the log above")
        admin_key = _create_admin_key(env)
        api = _spawn("queue-api", env)
        worker = _spawn("queue-worker", env)
        port = env["API_PORT"]
        print(  # noqa: T201 - a CLI
            f"\nAPI:     http://127.0.0.1:{port}  (OpenAPI: http://127.0.0.1:{port}/schema)\n"
            f"Console: http://127.0.0.1:{port}/ui  (sign in with the API key below)\n"
            f"Worker:  http://127.0.0.1:{env['WORKER_METRICS_PORT']}/metrics\n"
            f"API key: {admin_key}  (every scope; curl -H 'Authorization: Bearer {admin_key}')\n"
            "Ctrl-C stops everything.\n",
            flush=True,
        )
        try:
            while not stop.wait(0.5):
                for name, proc in (("queue-api", api), ("queue-worker", worker)):
                    if proc.poll() is not None:
                        print(f"{name} exited with {proc.returncode}", flush=True)  # noqa: T201
                        stop.set()
        finally:
            for proc in (worker, api):  # the worker first: it drains running jobs
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in (worker, api):
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    main()
