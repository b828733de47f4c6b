"""Fixtures for the observability tests: the Prometheus binaries (found, or installed once per
session), and a process stack like the e2e tests' that is always torn down."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.stack import Stack
from observability.prometheus_bin import (
    PrometheusBinaries,
    PrometheusUnavailableError,
    prometheus_binaries,
)

# A test that may be the first to need Prometheus pays for installing it (apt-get update and
# install; a few seconds on a warm mirror, bounded by prometheus_bin.APT_TIMEOUT_S each).
INSTALL_ALLOWANCE_S = 600


@pytest.fixture(name="prometheus_bin", scope="session")
def fx_prometheus_bin() -> PrometheusBinaries:
    try:
        return prometheus_binaries()
    except PrometheusUnavailableError as exc:
        pytest.fail(f"Prometheus is needed for this test and is not available: {exc}")


@pytest.fixture(name="stack")
def fx_stack(tmp_path: Path) -> Iterator[Stack]:
    """Starts our console scripts; stops every one of them at teardown, pass or fail."""
    stack = Stack(tmp_path)
    try:
        yield stack
    finally:
        stack.stop_all()
