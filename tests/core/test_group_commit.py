"""GroupCommitter: items waiting together are written in one call; an outage is retried or
reported; added items (nobody awaits them) are written all the same."""

import asyncio
from collections.abc import Sequence

from structlog.testing import capture_logs

from queue_core.errors import DatabaseUnavailableError
from queue_core.group_commit import GroupCommitter


class Store:
    """A write function that records its batches; it can be made to fail or to hang."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.outages = 0  # this many calls raise DatabaseUnavailableError first
        self.bug: Exception | None = None  # raised once by the next call
        self.gate = asyncio.Event()
        self.gate.set()

    async def write(self, items: Sequence[int]) -> list[int | BaseException]:
        await self.gate.wait()
        if self.outages:
            self.outages -= 1
            raise DatabaseUnavailableError(OSError("connection refused"))
        if self.bug is not None:
            bug, self.bug = self.bug, None
            raise bug
        self.batches.append(list(items))
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


async def test_items_submitted_together_share_one_write_and_get_their_own_results() -> None:
    store = Store()
    committer = GroupCommitter(store.write, name="test", retry_transient=False)

    results = await asyncio.gather(
        *(committer.submit(i) for i in (2, 4, 5)), return_exceptions=True
    )

    assert store.batches == [[2, 4, 5]]
    assert results[:2] == [20, 40]
    assert isinstance(results[2], ValueError)  # one item's failure is its own


async def test_added_items_are_written_without_anyone_waiting_for_them() -> None:
    store = Store()
    committer = GroupCommitter(store.write, name="test", retry_transient=True)
    store.gate.clear()

    for i in range(5):
        committer.add(i)
    assert committer.pending == 5
    assert not await committer.wait_written(0.05)  # the write is stuck: not written yet
    store.gate.set()

    assert await committer.wait_written(5.0)
    assert store.batches == [[0, 1, 2, 3, 4]]
    assert committer.pending == 0


async def test_an_outage_keeps_added_items_until_they_are_written() -> None:
    store = Store()
    store.outages = 2
    committer = GroupCommitter(store.write, name="test", retry_transient=True)

    committer.add(1)
    committer.add(2)

    assert await committer.wait_written(5.0)
    assert store.batches == [[1, 2]]  # written once, after the outage


async def test_an_outage_fails_submitted_items_back_when_not_retrying() -> None:
    store = Store()
    store.outages = 1
    committer = GroupCommitter(store.write, name="test", retry_transient=False)

    results = await asyncio.gather(committer.submit(2), return_exceptions=True)

    assert isinstance(results[0], DatabaseUnavailableError)
    assert await committer.submit(4) == 40  # the next batch is written as usual


async def test_a_failing_write_of_added_items_is_logged_and_later_items_still_go() -> None:
    store = Store()
    store.bug = RuntimeError("a bug in write")
    committer = GroupCommitter(store.write, name="outcomes", retry_transient=True)

    with capture_logs() as logs:
        committer.add(1)
        assert await committer.wait_written(5.0)
    committer.add(2)
    assert await committer.wait_written(5.0)

    failed = [entry for entry in logs if entry["event"] == "group_commit_failed"]
    assert len(failed) == 1
    assert failed[0]["name"] == "outcomes"
    assert failed[0]["items"] == 1
    assert store.batches == [[2]]
