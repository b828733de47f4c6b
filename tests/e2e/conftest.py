"""Fixtures for the end-to-end tests: a process stack that is always torn down, and the full
topology (queue-migrate, then queue-api and two queue-workers) on a database of its own."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.stack import Stack, Topology


@pytest.fixture(name="stack")
def fx_stack(tmp_path: Path) -> Iterator[Stack]:
    """Starts our console scripts; stops every one of them at teardown, pass or fail."""
    stack = Stack(tmp_path)
    try:
        yield stack
    finally:
        stack.stop_all()


@pytest.fixture(name="topology")
def fx_topology(stack: Stack, empty_db_url: str) -> Topology:
    """queue-migrate on an empty database, then the API and two workers on it, all ready."""
    stack.migrate(empty_db_url)
    api = stack.spawn_api(empty_db_url)
    workers = (
        stack.spawn_worker(empty_db_url, "worker-a", {"WORKER_CONCURRENCY": "4"}),
        stack.spawn_worker(empty_db_url, "worker-b", {"WORKER_CONCURRENCY": "4"}),
    )
    stack.wait_ready(api, *workers)
    return Topology(stack=stack, database_url=empty_db_url, api=api, workers=workers)
