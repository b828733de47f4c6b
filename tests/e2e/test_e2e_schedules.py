"""Periodic jobs with real processes: three queue-workers declaring one every-second schedule
make exactly one job per tick, with no tick lost, while one of them is SIGKILLed; and after all
workers were down, the missed ticks follow each schedule's policy (one catch-up job, or none)."""

import itertools
import os
import signal
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from e2e.schedule_policy_tasks import GRACE_S
from e2e.stack import Stack, Worker, fetch

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent


def _env(module: str) -> Mapping[str, str]:
    return {
        "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "WORKER_TASKS": f"queue_worker.builtin_tasks,{module}",
    }


EXIT_TIMEOUT_S = 15.0
TICKS = 30
ONE_S = timedelta(seconds=1)


def _ticks(db_url: str, name: str) -> list[tuple[str, datetime, datetime]]:
    """(unique key, tick, enqueued at) of every job the schedule made, by tick."""
    rows = fetch(
        db_url,
        "SELECT unique_key, scheduled_at, created_at FROM jobs"
        f" WHERE type = '{name}' ORDER BY scheduled_at",
    )
    return [(r["unique_key"], r["scheduled_at"], r["created_at"]) for r in rows]


def _stop(stack: Stack, worker: Worker) -> None:
    worker.proc.signal(signal.SIGTERM)
    code = worker.proc.wait(timeout_s=EXIT_TIMEOUT_S)
    assert code == 0, f"worker exit status {code}\n{stack.logs()}"


def test_three_workers_one_killed_make_exactly_one_job_per_tick(stack: Stack, db_url: str) -> None:
    env = _env("schedule_tasks")
    workers = [stack.spawn_worker(db_url, f"worker-{n}", env) for n in range(3)]
    stack.wait_ready(*workers)

    def ticks_at_least(n: int) -> bool:
        return len(_ticks(db_url, "every_second")) >= n

    stack.wait(lambda: ticks_at_least(TICKS // 3), what="10 ticks", timeout_s=30)
    victim = workers[0]
    victim.proc.signal(signal.SIGKILL)
    assert victim.proc.wait(timeout_s=EXIT_TIMEOUT_S) == -signal.SIGKILL
    stack.wait(
        lambda: ticks_at_least(TICKS),
        what=f"{TICKS} ticks",
        alive=[w.proc for w in workers[1:]],
        timeout_s=40,
    )
    for worker in workers[1:]:
        _stop(stack, worker)

    ticks = _ticks(db_url, "every_second")
    keys = Counter(key for key, _, _ in ticks)
    assert [k for k, n in keys.items() if n > 1] == [], "a tick made more than one job"
    instants = [tick for _, tick, _ in ticks]
    assert len(instants) >= TICKS
    # Every second from the first tick to the last has its job: none lost to the kill.
    assert instants == [instants[0] + n * ONE_S for n in range(len(instants))]
    assert all(key == f"schedule:every_second:{tick.isoformat()}" for key, tick, _ in ticks)
    # The jobs themselves ran: the survivors worked off the kill's share too.
    statuses = Counter(r["status"] for r in fetch(db_url, "SELECT status FROM jobs"))
    assert set(statuses) <= {"completed", "running", "pending"}
    assert "every_second" in stack.logs()


def _late_ticks(workers: Sequence[Worker], name: str, event: str, field: str) -> list[datetime]:
    """The ticks of ``name`` the workers dealt with as missed, by their ``event`` log lines: a
    tick is missed when it was more than the grace late at the turn's read of the clock
    (``late_s``), which the job's created_at, taken later in the turn, cannot tell."""
    return [
        datetime.fromisoformat(line[field])
        for worker in workers
        for line in worker.events(event)
        if line["schedule"] == name and line["late_s"] > GRACE_S
    ]


def test_missed_ticks_after_downtime_follow_each_schedules_policy(
    stack: Stack, db_url: str
) -> None:
    env = _env("schedule_policy_tasks")
    first = stack.start_worker(db_url, "worker-1", env)
    names = ("catch_up_once", "skip_missed")

    def each_has(n: int) -> bool:
        return all(len(_ticks(db_url, name)) >= n for name in names)

    stack.wait(lambda: each_has(3), what="3 ticks each", timeout_s=30)
    _stop(stack, first)
    before = {name: len(_ticks(db_url, name)) for name in names}
    time.sleep(3 * GRACE_S)  # every worker down: 9 ticks come and go
    second = stack.start_worker(db_url, "worker-2", env)
    stack.wait(
        lambda: all(len(_ticks(db_url, n)) >= before[n] + 3 for n in names),
        what="3 more ticks each",
        timeout_s=30,
    )
    _stop(stack, second)

    workers = (first, second)
    for name in names:
        ticks = _ticks(db_url, name)
        assert Counter(k for k, _, _ in ticks).most_common(1)[0][1] == 1
        instants = [tick for _, tick, _ in ticks]
        gaps = [(a, b) for a, b in itertools.pairwise(instants) if b - a != ONE_S]
        assert len(gaps) == 1, f"{name}: one gap expected, the downtime: {gaps}"
        (_, resumed_at) = gaps[0]
        enqueued = _late_ticks(workers, name, "schedule_enqueued", "tick")
        skipped = _late_ticks(workers, name, "schedule_ticks_skipped", "through")
        if name == "catch_up_once":
            # One job for the latest missed tick, the first after the gap; the on-time ones follow.
            assert enqueued == [resumed_at], f"{name}: one catch-up job, the gap's end: {enqueued}"
            assert skipped == []
        else:
            # None for the missed ticks: passed over through the one before the first on time.
            assert enqueued == [], f"{name}: skip runs no missed tick: {enqueued}"
            assert skipped == [resumed_at - ONE_S], f"{name}: {skipped}"
        assert gaps[0][1] - gaps[0][0] >= 2 * ONE_S
