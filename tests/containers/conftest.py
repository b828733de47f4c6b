"""The compose stack for the containers tests: built, started and healthy once for the module
that uses it, torn down (``down --volumes --remove-orphans``) pass or fail. A failing test's
report carries every container's state and the tail of its logs."""

import functools
from collections.abc import Generator, Iterator

import httpx
import pytest

from containers.compose import ComposeError, ComposeStack
from helpers import wait_until
from pg_provider import docker_engine_answers

# Docker runs the images' HEALTHCHECKs every 10 s after a 10 s start period: the first verdict
# comes about 10 s after a container starts.
HEALTHY_TIMEOUT_S = 90.0


def _healthy(stack: ComposeStack, service: str) -> bool:
    ids = stack.container_ids(service)
    states = [stack.inspect(container_id)["State"] for container_id in ids]
    return bool(states) and all(s.get("Health", {}).get("Status") == "healthy" for s in states)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


# Module scope: the stack is gone before the database tests that `make test-containers` runs
# next, which then have the machine to themselves.
@pytest.fixture(name="compose_stack", scope="module")
def fx_compose_stack() -> Iterator[ComposeStack]:
    if not docker_engine_answers():
        pytest.fail(
            "the containers tests need a Docker engine: set DOCKER_HOST (on a machine without "
            "one, `bash ../shared/tools/local-docker/setup.sh` starts one, as .ci/run does)"
        )
    stack = ComposeStack()
    try:
        try:
            stack.build()
            stack.up()
            for service in ("api", "worker"):
                wait_until(
                    functools.partial(_healthy, stack, service),
                    timeout_s=HEALTHY_TIMEOUT_S,
                    interval_s=0.5,
                    what=f"every {service} container healthy",
                )
            prometheus = stack.url("prometheus", 9090)
            wait_until(lambda: _answers(f"{prometheus}/-/ready"), timeout_s=30, what="prometheus")
        except Exception as exc:
            # A setup error has no test report of its own to carry the logs.
            exc.add_note(_logs_or_why_not(stack))
            raise
        yield stack
    finally:
        stack.down()


def _logs_or_why_not(stack: ComposeStack) -> str:
    try:
        return stack.all_logs()
    except ComposeError as exc:
        return f"compose ps and logs unavailable: {exc}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    stack = getattr(item, "funcargs", {}).get("compose_stack")
    if report.failed and isinstance(stack, ComposeStack):
        report.sections.append(("compose ps and logs", _logs_or_why_not(stack)))
    return report
