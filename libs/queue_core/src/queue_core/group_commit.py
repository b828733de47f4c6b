"""Group commit: many callers' writes combined into one statement and one commit.

Callers submit an item and await its result. One flush task at a time hands everything waiting
to ``write`` in a single call (one round trip, one commit, one NOTIFY); items submitted while
that is in flight form the next batch. Batches therefore grow with load by themselves — no
timer, so an idle system adds no latency — and a commit's cost (a WAL flush, and the global
lock a NOTIFY takes at commit) is paid once per batch instead of once per item.

``retry_transient`` decides what a transient database error (an outage, or PostgreSQL aborting
the statement to break a deadlock) does to a batch: kept and retried with the shared backoff
(``queue_core.retry.TRANSIENT_RETRY``) until it is written (outcomes of work already done must
not be lost), or failed back to its callers at once (an enqueue caller gets an error it can
report, e.g. an HTTP 503).

Batches are written by a task started when items arrive, or, once :meth:`~GroupCommitter.run`
is running, by that one long-lived task: the worker runs it as a supervised service, so an
error escaping a flush is logged, counted and followed by a restart instead of vanishing with
a short-lived task.

Callers that need no answer :meth:`~GroupCommitter.add` their item instead: no future is made
for it and nobody is woken when it is written, so ``write`` itself acts on the results (the
worker reports each job's outcome from there). At tens of thousands of items a second, a
future and a task wake-up per item are a measurable share of the work.
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from queue_core.errors import TransientDatabaseError
from queue_core.log import get_logger
from queue_core.retry import TRANSIENT_RETRY

log = get_logger("queue_core.group_commit")

T = TypeVar("T")
R = TypeVar("R")

# How often wait_written looks again while run() serves the flushes (shutdown only).
_WRITTEN_POLL_S = 0.01


@dataclass(slots=True)
class _Waiting(Generic[T, R]):
    item: T
    done: asyncio.Future[R] | None  # None: added, nobody waits for it


class GroupCommitter(Generic[T, R]):
    def __init__(
        self,
        write: Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]],
        *,
        name: str,
        max_batch: int = 1000,
        retry_transient: bool,
    ) -> None:
        """``write`` stores a batch and returns one result per item, in order; an exception
        in place of a result fails that item alone."""
        self._write = write
        self._name = name
        self._max_batch = max_batch
        self._retry_transient = retry_transient
        self._waiting: list[_Waiting[T, R]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None  # set while run() serves the flushes
        self.batches_written = 0  # progress, for whoever supervises run()

    @property
    def pending(self) -> int:
        """Items submitted or added and not yet written (the batch being written included)."""
        return len(self._waiting)

    async def submit(self, item: T) -> R:
        """Queue ``item`` and wait for its result. The item is written even if this call is
        cancelled: cancelling only stops waiting for it."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._enqueue(_Waiting(item, done))
        return await done

    def add(self, item: T) -> None:
        """Queue ``item`` without waiting for it: ``write`` handles its result."""
        self._enqueue(_Waiting(item, None))

    def _enqueue(self, waiting: _Waiting[T, R]) -> None:
        self._waiting.append(waiting)
        wake = self._wake
        if wake is not None:
            wake.set()
        elif self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name=self._name)

    async def run(self) -> None:
        """Write batches from this task until cancelled, instead of from tasks started on
        demand. An error escaping a flush (a bug: ``write`` failing is handled per batch)
        ends this call, and the items stay queued for the next call to write."""
        wake = self._wake = asyncio.Event()
        wake.set()  # items queued before (or left by a failed call) are written first
        try:
            while True:
                await wake.wait()
                wake.clear()
                await self._flush()
        finally:
            self._wake = None

    async def wait_written(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for everything queued so far to be written (or failed).
        Returns whether it was; the writing goes on either way."""
        if self._wake is not None:
            # run() serves: no task ends when the queue empties, so look until it has.
            try:
                async with asyncio.timeout(timeout_s):
                    # Polled: an event set per write would cost on the hot path; this is
                    # shutdown only.
                    while self._waiting:  # noqa: ASYNC110
                        await asyncio.sleep(_WRITTEN_POLL_S)
            except TimeoutError:
                return False
            return True
        flusher = self._flusher
        if flusher is None or flusher.done():
            return True
        done, _ = await asyncio.wait({flusher}, timeout=timeout_s)
        return bool(done)

    async def _flush(self) -> None:
        failures = 0
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            try:
                results = await self._write([w.item for w in batch])
            except TransientDatabaseError as exc:
                if not self._retry_transient:
                    self._settle(batch, exc)
                    continue
                failures += 1
                delay = TRANSIENT_RETRY.delay(failures)
                log.warning(
                    "group_commit_retry",
                    name=self._name,
                    items=len(batch),
                    error=str(exc),
                    retry_in_s=round(delay, 3),
                )
                await asyncio.sleep(delay)
                continue
            except Exception as exc:  # noqa: BLE001 - handed to every caller of this batch
                # Not an outage (bad input, a bug): retrying cannot help. The callers decide.
                self._settle(batch, exc)
                continue
            failures = 0
            self.batches_written += 1
            del self._waiting[: len(batch)]
            for waiting, result in zip(batch, results, strict=True):
                done = waiting.done
                if done is None or done.done():
                    continue
                if isinstance(result, BaseException):
                    done.set_exception(result)
                else:
                    done.set_result(result)

    def _settle(self, batch: list[_Waiting[T, R]], exc: BaseException) -> None:
        del self._waiting[: len(batch)]
        unanswered = 0
        for waiting in batch:
            if waiting.done is None:
                unanswered += 1
            elif not waiting.done.done():
                waiting.done.set_exception(exc)
        if unanswered:
            # Nobody awaits these items to hear of it: ``write`` should not have raised.
            log.error("group_commit_failed", name=self._name, items=unanswered, exc_info=exc)

    def abandon(self) -> int:
        """Give up on everything waiting (out of time). Returns how many items were dropped.
        Stop whatever runs :meth:`run` first: it would go on writing a batch it holds."""
        if self._flusher is not None:
            self._flusher.cancel()
        dropped = len(self._waiting)
        for waiting in self._waiting:
            if waiting.done is not None and not waiting.done.done():
                waiting.done.cancel()
        self._waiting.clear()
        return dropped
