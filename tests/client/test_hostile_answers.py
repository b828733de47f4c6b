"""What the clients and queuectl do with answers no healthy API gives, from a loopback server
that plays a broken proxy or a buggy API (hostile_server): a cursor that comes back for ever, a
redirect, an HTML page with a 200. Each ends in a ``QueueError`` that says what happened, never
a loop, an untyped exception or a traceback."""

import itertools
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from client.hostile_server import Answer, hostile_server, json_answer
from helpers import BIN
from queue_client import (
    AsyncClient,
    Client,
    ConnectionFailedError,
    QueueError,
    UnexpectedResponseError,
)
from queue_client.calls import MAX_ANSWER_BYTES
from queue_client.retrying import NO_RETRY

JOB_ID = uuid.uuid4()
JOB = {
    "id": str(JOB_ID),
    "type": "noop",
    "queue": "default",
    "status": "pending",
    "priority": 0,
    "attempts": 0,
    "max_attempts": 3,
    "created_at": "2026-12-04T10:00:00Z",
    "scheduled_at": None,
    "started_at": None,
    "finished_at": None,
    "error_message": None,
    "added_later": {"ignored": True},  # a field a newer API adds: tolerated
}


def _same_cursor_for_ever() -> Callable[[str, str], Answer]:
    """Pages that all point to the same next page; but the hundredth ends the walk, so that a
    client that loops fails its test rather than hangs it."""
    pages = itertools.count(1)

    def answer(method: str, _path: str) -> Answer:
        cursor = None if next(pages) % 100 == 0 else "AAAA"
        if method == "GET":
            return json_answer(200, {"jobs": [JOB], "next_cursor": cursor})
        return json_answer(200, {"affected": 0, "next_cursor": cursor})

    return answer


def test_a_cursor_answered_twice_ends_the_walk_with_an_error() -> None:
    with hostile_server(_same_cursor_for_ever()) as (url, requests), Client(url) as client:
        jobs = client.iter_jobs(queue="default")
        with pytest.raises(UnexpectedResponseError, match="cursor 'AAAA' again"):
            list(itertools.islice(jobs, 50))  # the bound only stops the test on a regression
        assert len(requests) == 2
        requests.clear()
        with pytest.raises(UnexpectedResponseError, match="cursor 'AAAA' again"):
            client.cancel_jobs(limit=10, queue="default")
        assert len(requests) == 2


async def test_the_async_client_ends_a_cursor_answered_twice_too() -> None:
    with hostile_server(_same_cursor_for_ever()) as (url, requests):
        async with AsyncClient(url) as client:
            seen: list[uuid.UUID] = []

            async def walk() -> None:
                async for job in client.iter_jobs():
                    seen.append(job.id)
                    assert len(seen) < 50, "walked round and round"

            with pytest.raises(UnexpectedResponseError, match="again"):
                await walk()
            assert seen == [JOB_ID]  # yielded once, not again
            with pytest.raises(UnexpectedResponseError, match="again"):
                await client.retry_jobs(limit=10)
    assert len(requests) == 4


def test_queuectl_list_on_a_cursor_answered_twice_is_an_error_not_a_hang(tmp_path: Path) -> None:
    with hostile_server(_same_cursor_for_ever()) as (url, _):
        result = subprocess.run(
            [str(BIN / "queuectl"), "--url", url, "list", "-o", "json"],
            env={"PATH": "/usr/bin:/bin", "XDG_CONFIG_HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("queuectl: error: GET /v1/jobs answered the cursor")


def test_a_redirect_names_where_it_points() -> None:
    def moved(_method: str, path: str) -> Answer:
        location = f"https://queue.example.com{path}"
        return 301, {"Location": location, "Content-Type": "text/html"}, b"<html>301</html>"

    with hostile_server(moved) as (url, requests), Client(url, retry=NO_RETRY) as client:
        with pytest.raises(QueueError) as redirected:
            client.list_queues()
        assert redirected.value.status == 301
        assert "redirected to https://queue.example.com/v1/queues" in str(redirected.value)
        assert requests == ["GET /v1/queues"], "not followed"


def test_an_html_page_with_a_200_is_an_unexpected_answer_from_every_endpoint() -> None:
    def portal(_method: str, _path: str) -> Answer:
        return 200, {"Content-Type": "text/html"}, b"<html>sign in to the proxy</html>"

    with hostile_server(portal) as (url, _), Client(url, retry=NO_RETRY) as client:
        for call in (client.health, client.list_queues, lambda: client.legacy_enqueue("t", {})):
            with pytest.raises(UnexpectedResponseError) as unexpected:
                call()
            assert unexpected.value.status == 200


def test_a_body_that_does_not_decompress_is_an_unexpected_answer() -> None:
    def garbled(_method: str, _path: str) -> Answer:
        return 200, {"Content-Type": "application/json", "Content-Encoding": "gzip"}, b"{}nope"

    with (
        hostile_server(garbled) as (url, _),
        Client(url, retry=NO_RETRY) as client,
        pytest.raises(UnexpectedResponseError) as unexpected,
    ):
        client.list_queues()
    assert "GET /v1/queues" in str(unexpected.value)


def test_an_answer_that_trickles_in_times_out_as_a_whole() -> None:
    """httpx's read timeout bounds each read only: a body a byte at a time would hold the
    caller for as long as it lasts. The whole body must arrive within the read timeout."""
    body = b'{"message": "ok"}' + b" " * 40

    def byte_by_byte() -> Iterator[bytes]:
        for i in range(len(body)):
            time.sleep(0.1)
            yield body[i : i + 1]

    def trickle(_method: str, _path: str) -> Answer:
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        return 200, headers, byte_by_byte()

    with hostile_server(trickle) as (url, _), Client(url, timeout_s=1, retry=NO_RETRY) as client:
        started = time.monotonic()
        with pytest.raises(ConnectionFailedError, match="timed out"):
            client.health()
        assert time.monotonic() - started < 3, "not the 6 s the body takes"


def test_an_answer_too_large_to_be_the_apis_is_refused_unread() -> None:
    chunk = b" " * (1024 * 1024)
    chunks = MAX_ANSWER_BYTES // len(chunk) + 16

    def flood(_method: str, _path: str) -> Answer:
        headers = {"Content-Type": "application/json", "Content-Length": str(chunks * len(chunk))}
        return 200, headers, (chunk for _ in range(chunks))

    with (
        hostile_server(flood) as (url, _),
        Client(url, retry=NO_RETRY) as client,
        pytest.raises(UnexpectedResponseError, match="larger than"),
    ):
        client.list_queues()
