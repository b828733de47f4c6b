"""The fleet: the live workers (table ``workers``) and the paused queues (table ``queues``).

Each worker registers itself at start and beats every :data:`WORKER_BEAT_S` (an upsert that
also prunes the dead), and deletes its row on a clean shutdown. A worker not seen for
:data:`WORKER_GONE_AFTER_S` (three beats) is gone: no listing shows it, and the next beat of
any worker deletes its row. Pausing a queue is a row in ``queues``; workers read the paused
ones every second (and at once on a NOTIFY on :data:`PAUSES_CHANNEL`) and claim only from the
others. None of this touches the jobs table: the named statements are in ``sql/fleet.sql``.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg

from queue_core.db import translate_connection_errors
from queue_core.sql import FLEET_QUERIES

# How often a worker says it is alive, and after how long without a word it is gone: three
# beats, so one slow or lost beat (a GC pause, a brief outage) does not make it vanish.
WORKER_BEAT_S: Final = 5.0
WORKER_GONE_AFTER_S: Final = 3 * WORKER_BEAT_S
# The channel on which a pause or resume is announced; the payload is the queue's name.
PAUSES_CHANNEL: Final = "queue_pauses"

Q_WORKER_BEAT = FLEET_QUERIES["worker_beat"]
Q_WORKER_LEAVE = FLEET_QUERIES["worker_leave"]
Q_LIVE_WORKERS = FLEET_QUERIES["live_workers"]
Q_PAUSED_QUEUES = FLEET_QUERIES["paused_queues"]
Q_QUEUE_STATES = FLEET_QUERIES["queue_states"]
Q_SET_QUEUE_PAUSED = FLEET_QUERIES["set_queue_paused"]


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerInfo:
    """What a worker registers: ``id`` is its lease owner id (jobs.lease_owner)."""

    id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    task_types: tuple[str, ...]
    concurrency: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveWorker(WorkerInfo):
    started_at: datetime
    last_seen_at: datetime

    def serves(self, job_type: str, queue: str) -> bool:
        return queue in self.queues and job_type in self.task_types


@dataclass(frozen=True, slots=True)
class QueueState:
    """A queue that has a row in ``queues``; ``paused_at`` None means it runs."""

    name: str
    paused_at: datetime | None

    @property
    def paused(self) -> bool:
        return self.paused_at is not None


class Fleet:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def beat(self, worker: WorkerInfo, *, gone_after_s: float = WORKER_GONE_AFTER_S) -> None:
        """Register ``worker`` or refresh its ``last_seen_at``; prune workers gone silent."""
        async with translate_connection_errors():
            await Q_WORKER_BEAT.execute(
                self._pool,
                worker_id=worker.id,
                host=worker.host,
                pid=worker.pid,
                queues=list(worker.queues),
                task_types=list(worker.task_types),
                concurrency=worker.concurrency,
                gone_after_s=gone_after_s,
            )

    async def leave(self, worker_id: str) -> None:
        """Remove a worker's row (its clean shutdown)."""
        async with translate_connection_errors():
            await Q_WORKER_LEAVE.execute(self._pool, worker_id=worker_id)

    async def live_workers(self, *, gone_after_s: float = WORKER_GONE_AFTER_S) -> list[LiveWorker]:
        async with translate_connection_errors():
            rows = await Q_LIVE_WORKERS.fetch(self._pool, gone_after_s=gone_after_s)
        return [
            LiveWorker(
                id=r["id"],
                host=r["host"],
                pid=r["pid"],
                queues=tuple(r["queues"]),
                task_types=tuple(r["task_types"]),
                concurrency=r["concurrency"],
                started_at=r["started_at"],
                last_seen_at=r["last_seen_at"],
            )
            for r in rows
        ]

    async def paused_queues(self, queues: Sequence[str]) -> frozenset[str]:
        """Which of ``queues`` are paused now."""
        async with translate_connection_errors():
            rows = await Q_PAUSED_QUEUES.fetch(self._pool, queues=list(queues))
        return frozenset(r["name"] for r in rows)

    async def queue_states(self) -> list[QueueState]:
        async with translate_connection_errors():
            rows = await Q_QUEUE_STATES.fetch(self._pool)
        return [QueueState(r["name"], r["paused_at"]) for r in rows]

    async def set_paused(self, queue: str, *, paused: bool) -> QueueState:
        """Pause or resume ``queue`` (pausing a paused queue keeps its first ``paused_at``),
        and tell the workers."""
        async with translate_connection_errors():
            row = await Q_SET_QUEUE_PAUSED.fetchrow(self._pool, queue=queue, paused=paused)
        if row is None:  # pragma: no cover - an upsert always returns its row
            raise RuntimeError("set_queue_paused returned no row")
        return QueueState(row["name"], row["paused_at"])
