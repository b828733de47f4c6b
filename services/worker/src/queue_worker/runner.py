"""The worker's claim loop: lease due jobs up to the free slots, run them, record the outcome.

    ┌──────────── wake: NOTIFY, a freed slot, a jittered poll, stop ───────────┐
    ▼                                                                          │
  claim(limit = free slots) ──▶ one asyncio task per job ──▶ its outcome queued ─┘
                                    ▲                              │
  heartbeat (every heartbeat_s) ────┘                              ▼
    extends every lease in one statement;         the completer writes every queued outcome
    stops jobs whose cancellation was             in one statement (group commit), then
    requested or whose lease was taken back       reports each job (metrics, log line)

A job's task ends, and its slot frees, when its handler returns; the outcome is written by
the completer, which retries while the database is away and cannot be cancelled by the job:
work that was done is not forgotten. If the worker dies before recording, the lease runs out,
a rescuer puts the job back, and it runs again (at-least-once delivery).

On stop: claiming ends at once, running jobs get ``shutdown_grace_s`` to finish, and those still
running then are cancelled and released to pending for another worker straight away. A handler
that swallows that cancel too is released all the same, and the process exits around it.

Each loop (claim, heartbeat, completer, timeouts, plus the listener and rescuer handed in) is a
service under one Supervisor (supervisor.py): an error is logged, counted and followed by a
restart, never a silent end. One job's data cannot stop the worker: whatever goes wrong around
its handler ends as a failed attempt with our own wording.

Every attempt is bounded: by the job's ``timeout_s``, else its handler's (both through a timer
of its own), else ``job_timeout_s``, the worker's default, which the timeouts service enforces
by looking over the running jobs every ``timeout_sweep_s`` (a timer per job would cost a third
of a no-op job's time). An attempt still running ``STUCK_GRACE_S`` past its timeout ignored its
cancellation: ``/healthz`` reports its slot as stuck.
"""

import asyncio
import contextlib
import contextvars
import enum
import functools
import itertools
import json
import math
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from logging import INFO

from queue_core.db import UNDECODABLE_JSON
from queue_core.errors import TransientDatabaseError
from queue_core.group_commit import GroupCommitter
from queue_core.jobs import ClaimedJob, Outcome, OutcomeKind, Recorded
from queue_core.limits import MAX_ERROR_CHARS, MAX_TIMEOUT_S
from queue_core.log import get_logger
from queue_core.queue import Queue
from queue_core.retry import TRANSIENT_RETRY, Backoff, jittered
from queue_core.states import JobStatus
from queue_core.tasks import (
    JobContext,
    PermanentError,
    Snooze,
    SyncHandler,
    TaskRegistry,
    snooze_seconds,
)
from queue_worker.events import NoEvents, WorkerEvents
from queue_worker.maintenance import Settler
from queue_worker.pauses import PauseWatcher
from queue_worker.settings import DEFAULT_JOB_TIMEOUT_S, DEFAULT_MAX_RESULT_BYTES
from queue_worker.supervisor import LoopService, Service, Supervisor

log = get_logger("queue_worker.runner")

# After the grace period, how long released and finished jobs may take to be recorded before
# the worker exits anyway (their leases then run out and the rescuer takes over).
RECORD_DEADLINE_S = 10.0
# A handler still running this long after its timeout cancelled it ignores cancellation (it
# swallows CancelledError, or blocks the loop): its slot is stuck and /healthz says so. Long
# enough for a handler's cleanup after a cancel, short next to any timeout worth setting.
STUCK_GRACE_S = 30.0
# The timeouts service looks over the running jobs at least this often: the worker's default
# timeout (an hour unless configured) is enforced to within about a second.
TIMEOUT_SWEEP_MAX_S = 1.0


def error_text(exc: BaseException) -> str:
    """The error_message stored for a failed attempt: bounded, and without what PostgreSQL
    text cannot hold, which would fail the statement recording the whole batch of outcomes:
    NUL characters, and unpaired surrogates (from a file name decoded as ``os.listdir``
    decodes one, with ``surrogateescape``, then put in a message). Both are spelled as
    escapes. An exception whose ``str()`` raises is named by its type alone."""
    try:
        message = str(exc)
    except Exception as str_error:  # noqa: BLE001 - a handler's exception may be anything
        # Else the handler's error would become an internal error of ours (and a
        # PermanentError's attempt be retried).
        message = f"<str() raised {type(str_error).__name__}>"
    text = f"{type(exc).__name__}: {message}"[:MAX_ERROR_CHARS]
    text = text.replace("\x00", "\\0").encode("utf-8", "backslashreplace").decode("utf-8")
    return text[:MAX_ERROR_CHARS]


class ResultError(Exception):
    """A handler's return value that cannot be stored as the job's result."""


# A NUL spelled as a JSON escape: not preceded by an odd number of backslashes, or it would be
# the text "\u0000" instead. jsonb refuses it, like PostgreSQL's text.
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def encode_result(value: object, max_bytes: int) -> str | None:
    """A handler's return value as the JSON text stored in jobs.result (None: no result).
    Raises :class:`ResultError`, saying why, for a value that is not JSON (NaN and infinities
    included), holds text jsonb cannot store (NUL, an unpaired surrogate), or is larger than
    ``max_bytes``. Checked here, in the job's own task: one job's value must never fail the
    statement that records a whole batch of outcomes."""
    if value is None:
        return None
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ResultError(f"the result is not JSON-serialisable: {error_text(exc)}") from None
    try:
        size = len(text.encode())
    except UnicodeEncodeError:
        size = -1
    if size < 0 or _JSON_NUL.search(text) is not None:
        raise ResultError(
            "the result holds text the database cannot store: a NUL character (\\u0000) or "
            "an unpaired surrogate (\\ud800 to \\udfff)"
        )
    if size > max_bytes:
        raise ResultError(
            f"the result is too large: {size} bytes of JSON, at most {max_bytes} "
            "(WORKER_MAX_RESULT_BYTES)"
        )
    return text


# "ValueError: <message>", as error_text writes a handler's exception; group 1 is the type.
_HANDLER_ERROR = re.compile(r"([A-Za-z_][\w.]*): ")


def loggable_error(error: str | None) -> str | None:
    """What the log may say of an attempt's error: our own wording whole, but only the type of
    a handler's exception, whose message may quote the payload (the built-in ``fail`` does).
    The whole message stays readable on the job itself."""
    if error is None:
        return None
    handler_error = _HANDLER_ERROR.match(error)
    return error if handler_error is None else handler_error.group(1)


def _outcome(
    job: ClaimedJob,
    kind: OutcomeKind,
    error: str | None = None,
    retry_in_s: float = 0.0,
    result: str | None = None,
) -> Outcome:
    return Outcome(job.id, kind, error, retry_in_s, attempt=job.attempt, result=result)


def _call_soon(
    loop: asyncio.AbstractEventLoop, callback: Callable[[Future[object]], None], arg: Future[object]
) -> None:
    """``callback(arg)`` on ``loop``, from another thread; nothing if the loop has closed (the
    worker is exiting)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, arg)


def _unrunnable(payload: object) -> str:
    """Why a stored payload cannot be handed to a handler (which is promised a JSON object)."""
    if payload is UNDECODABLE_JSON:
        return "payload cannot be decoded: nested too deeply, or a number too long to read"
    kind = _JSON_TYPE_NAMES.get(type(payload), "value")
    return f"payload is not a JSON object (it is a JSON {kind})"


_JSON_TYPE_NAMES: dict[type, str] = {
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def _cancelled_from_outside(entry: "_Active") -> bool:
    """Whether a CancelledError reaching the attempt's code is a cancel of its task (a stop the
    runner asked for, or the event loop closing), not one the handler raised on its own."""
    task = asyncio.current_task()
    return entry.stop_reason is not None or (task is not None and task.cancelling() > 0)


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class StopReason(enum.Enum):
    CANCEL_REQUESTED = "cancel requested"
    LEASE_LOST = "lease lost"
    SHUTDOWN = "worker shutdown"
    TIMED_OUT = "timed out"


@dataclass(frozen=True, slots=True)
class Health:
    """What /healthz reports: healthy unless the claim loop stalled, a service keeps failing,
    or slots are stuck past their timeout."""

    stalled: bool = False
    failing_services: tuple[str, ...] = ()
    stuck_slots: int = 0

    @property
    def ok(self) -> bool:
        return not (self.stalled or self.failing_services or self.stuck_slots)

    def body(self) -> dict[str, object]:
        if self.ok:
            return {"status": "ok"}
        problems = []
        if self.stalled:
            problems.append("claim loop stalled")
        problems.extend(f"service failing: {name}" for name in self.failing_services)
        if self.stuck_slots:
            problems.append(f"stuck slots: {self.stuck_slots}")
        return {
            "status": "unhealthy",
            "problems": problems,
            "failing_services": list(self.failing_services),
            "stuck_slots": self.stuck_slots,
        }


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    queues: tuple[str, ...]
    concurrency: int
    poll_interval_s: float
    lease_s: float
    heartbeat_s: float
    shutdown_grace_s: float
    backoff: Backoff
    job_timeout_s: float = DEFAULT_JOB_TIMEOUT_S
    stuck_grace_s: float = STUCK_GRACE_S
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES


@dataclass(slots=True)  # one per job: not frozen, which would make it 4x dearer to build
class _Finished:
    """An attempt whose handler has ended, waiting for its outcome to be written."""

    job: ClaimedJob
    outcome: Outcome
    duration_s: float
    timed_out: bool


@dataclass(slots=True)
class _Active:
    """A job whose handler is running (heartbeats and stop requests apply to it)."""

    job: ClaimedJob
    task: asyncio.Task[None]
    # Set when the handler starts (inf until then: neither timed out nor stuck).
    started_at: float = math.inf
    timeout_s: float = DEFAULT_JOB_TIMEOUT_S  # the one that applies to this attempt
    swept: bool = True  # the worker's default applies, enforced by the timeouts service
    stop_reason: StopReason | None = field(default=None)

    def stop(self, reason: StopReason) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self.task.cancel()


class Runner:
    def __init__(  # noqa: PLR0913 - keyword-only: seams for tests and the services to supervise
        self,
        queue: Queue,
        registry: TaskRegistry,
        config: RunnerConfig,
        *,
        worker_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        events: WorkerEvents | None = None,
        services: Sequence[Service] = (),
        pauses: PauseWatcher | None = None,
    ) -> None:
        """``services``: more loops to run under this runner's supervisor (the listener, the
        rescuer, the presence), started with the claim loop and stopped after the drain.
        ``pauses``: which of the queues are paused; the runner supervises it too, and claims
        only from the others (None: every queue in the config, always)."""
        self._events: WorkerEvents = events or NoEvents()
        self._pauses = pauses
        if pauses is not None:
            pauses.on_change = self.wake  # a resumed queue may have due jobs
            services = [*services, pauses]
        self._queue = queue
        self.worker_id = worker_id or new_worker_id()
        # Outcomes of jobs finishing together are written in one statement; an outage delays
        # them (retried with backoff) but never drops them.
        self._completer: GroupCommitter[_Finished, None] = GroupCommitter(
            self._record_outcomes, name="record_outcomes", retry_transient=True
        )
        # The dependants of jobs with an outcome are settled by a service of their own, so
        # that the completer never waits for a long chain of them.
        self._settler = Settler(queue)
        self._registry = registry
        self._config = config
        self._clock = clock
        # Handlers still running, by (job id, attempt): each takes a slot. After a lost lease
        # the same job may be claimed again while the old attempt is still being stopped.
        # A job's task ends right after its handler does (nothing in between awaits), so these
        # are also the job tasks still alive.
        self._active: dict[tuple[uuid.UUID, int], _Active] = {}
        # Sync handlers run in threads of their own pool, one per slot: asyncio's shared pool
        # (a few threads a core) let a handful of hung handlers starve every other. A thread
        # cannot be interrupted: one whose attempt ended first (timed out, cancelled, lease
        # lost) keeps its slot until it returns, and /healthz counts it as stuck.
        self._threads = ThreadPoolExecutor(config.concurrency, thread_name_prefix="handler")
        self._orphans: dict[Future[object], float] = {}  # such threads, since when
        # Tasks of async handlers that ignored their cancel at shutdown (_abandon_handlers).
        self._abandoned: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.last_loop_at = clock()
        self._claim_turns = 0
        self._claim_lost_database = False
        self._heartbeat_turns = 0
        self._sweep_turns = 0
        self.supervisor = Supervisor(
            [
                LoopService("claim", self._claim_loop, lambda: self._claim_turns),
                LoopService("heartbeat", self._heartbeat_loop, lambda: self._heartbeat_turns),
                LoopService(
                    "completer", self._completer.run, lambda: self._completer.batches_written
                ),
                LoopService("timeouts", self._timeout_loop, lambda: self._sweep_turns),
                self._settler,
                *services,
            ],
            events=self._events,
        )

    # -- signals from outside ------------------------------------------------------------

    def wake(self) -> None:
        """Something may be claimable now (a NOTIFY arrived, a slot was freed)."""
        self._wake.set()

    def request_stop(self) -> None:
        """Stop claiming; :meth:`run` then drains running jobs and returns."""
        if not self._stopping.is_set():
            log.info("worker_stopping", running=len(self._active))
        self._stopping.set()
        self._wake.set()
        self.supervisor.retry_now("claim")  # a claim loop backing off sees the stop at once

    @property
    def running(self) -> int:
        return len(self._active)

    @property
    def threads_still_running(self) -> int:
        """Threads of sync handlers whose attempt has ended but which have not returned: after
        :meth:`run`, those that outlived the drain (their jobs released or recorded)."""
        return len(self._orphans)

    def health(self, stall_after_s: float) -> Health:
        """Called from the side port's thread: reads plain values and copies of the dicts."""
        now = self._clock()
        grace_s = self._config.stuck_grace_s
        stuck = sum(
            1
            for entry in list(self._active.values())
            if now - entry.started_at > entry.timeout_s + grace_s
        )
        # A thread whose attempt ended (at its timeout, or on a cancel) and runs on past the
        # same grace: a timed-out one is then as late as a stuck async handler would be.
        stuck += sum(1 for since in list(self._orphans.values()) if now - since > grace_s)
        return Health(
            stalled=now - self.last_loop_at >= stall_after_s,
            failing_services=tuple(self.supervisor.failing()),
            stuck_slots=stuck,
        )

    # -- the loops -----------------------------------------------------------------------

    async def run(self) -> None:
        log.info(
            "worker_started",
            worker_id=self.worker_id,
            queues=list(self._config.queues),
            concurrency=self._config.concurrency,
            tasks=self._registry.names(),
        )
        self.supervisor.start()
        try:
            await self.supervisor.finished("claim")  # returns once a stop was requested
        finally:
            try:
                await self._drain()
            finally:
                await self.supervisor.stop()
                self._threads.shutdown(wait=False, cancel_futures=True)
        log.info("worker_stopped", worker_id=self.worker_id)

    async def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            self.last_loop_at = self._clock()
            # Cleared before looking, so a wake-up (NOTIFY, freed slot, stop) that arrives while
            # we claim or wait is kept for the next turn instead of lost.
            self._wake.clear()
            free = self._free_slots()
            queues = self._config.queues if self._pauses is None else self._pauses.claimable
            if not queues:
                # Every queue is paused, or which are is not known yet (the first read of the
                # paused queues has not succeeded: claiming then could take a paused queue's
                # jobs). A resume, or that first read, wakes this loop.
                self._claim_turns += 1
                await self._wait_for_wake(jittered(self._config.poll_interval_s))
                continue
            if free <= 0:
                # Every slot is busy: a finishing job sets the event. NOTIFYs meanwhile only
                # matter once a slot is free, and the claim then finds their jobs anyway.
                self._claim_turns += 1
                await self._wait_for_wake(jittered(self._config.poll_interval_s))
                continue
            try:
                jobs = await self._queue.claim(
                    worker_id=self.worker_id,
                    queues=queues,
                    limit=free,
                    lease_s=self._config.lease_s,
                )
            except TransientDatabaseError:
                self._claim_lost_database = True
                raise  # the supervisor backs off and runs this loop again
            self._claim_turns += 1
            if self._claim_lost_database:
                self._claim_lost_database = False
                log.info("database_reachable_again")
                self._events.database_reconnected("claim")
            for job in jobs:
                self._start(job)
            if len(jobs) == free:
                continue  # there may be more due work: claim again as soon as slots free up
            await self._wait_for_wake(jittered(self._config.poll_interval_s))

    async def _heartbeat_loop(self) -> None:
        """Extend the leases of every running job in one statement, and stop the jobs whose
        cancellation was requested or whose lease another worker's rescuer took back."""
        while True:
            await asyncio.sleep(jittered(self._config.heartbeat_s))
            held = list(self._active)
            if not held:
                self._heartbeat_turns += 1
                continue
            try:
                leases = await self._queue.heartbeat(
                    worker_id=self.worker_id, attempts=held, lease_s=self._config.lease_s
                )
            except TransientDatabaseError as exc:
                # Handled here rather than by the supervisor's backoff: the lease deadline
                # sets the pace, so the retry is simply the next beat (a lease outlives two).
                log.warning("heartbeat_failed", error=str(exc), jobs=len(held))
                self._events.heartbeat_failed()
                continue
            self._heartbeat_turns += 1
            still_ours = {(lease.job_id, lease.attempt): lease for lease in leases}
            for key in held:
                entry = self._active.get(key)
                if entry is None:
                    continue  # its handler finished while we waited: nothing to stop
                lease = still_ours.get(key)
                if lease is None:
                    log.warning("job_lease_lost", job_id=str(key[0]), attempt=key[1])
                    entry.stop(StopReason.LEASE_LOST)
                elif lease.cancel_requested:
                    entry.stop(StopReason.CANCEL_REQUESTED)

    async def _timeout_loop(self) -> None:
        """Stop the attempts that outlived the worker's default timeout. Jobs with a timeout
        of their own (or their handler's) have a timer each instead."""
        interval_s = min(TIMEOUT_SWEEP_MAX_S, self._config.job_timeout_s / 4)
        while True:
            await asyncio.sleep(interval_s)
            now = self._clock()
            for entry in list(self._active.values()):
                if entry.swept and now - entry.started_at >= entry.timeout_s:
                    entry.stop(StopReason.TIMED_OUT)
            self._sweep_turns += 1

    async def _wait_for_wake(self, timeout_s: float) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await self._wake.wait()
        except TimeoutError:
            pass

    def _free_slots(self) -> int:
        """Claimable now. A slot is a running handler: a job whose handler returned no longer
        takes one while its outcome is being written, so the next claim overlaps that write
        instead of waiting for it. Outcomes waiting to be written are bounded too (at most
        one concurrency's worth beyond the running jobs), so an outage that holds them back
        stops the claiming."""
        concurrency = self._config.concurrency
        running = len(self._active) + len(self._orphans)
        return min(concurrency - running, 2 * concurrency - running - self._completer.pending)

    def _start(self, job: ClaimedJob) -> None:
        self._events.job_started(job)
        # Unnamed: formatting a UUID into a task name is a measurable share of a no-op job.
        # The task removes itself from _active when its handler ends (see _attempt).
        task = asyncio.create_task(self._execute(job))
        self._active[job.id, job.attempt] = _Active(job, task, timeout_s=self._config.job_timeout_s)

    # -- one job -------------------------------------------------------------------------

    async def _execute(self, job: ClaimedJob) -> None:
        started = self._clock()
        try:
            outcome, timed_out = await self._attempt(job, started)
        except Exception as exc:  # one job's data must not stop the worker
            # A bug of ours or a row we cannot run (e.g. a NaN timeout_s): the attempt fails
            # with our wording. The log line has the traceback, never the job's payload.
            log.exception("job_internal_error", job_id=str(job.id), error_type=type(exc).__name__)
            error = f"internal error running the job: {type(exc).__name__}"
            retry_in_s = self._config.backoff.delay(job.attempt)
            outcome, timed_out = _outcome(job, OutcomeKind.FAILED, error, retry_in_s), False
        duration_s = self._clock() - started
        if asyncio.current_task() in self._abandoned:
            return  # released already, at shutdown
        if outcome is None:
            log.warning("job_abandoned", job_id=str(job.id), type=job.type, reason="lease lost")
            lost = _outcome(job, OutcomeKind.FAILED, "lease lost")
            finished = _Finished(job, lost, duration_s, timed_out)
            self._report(finished, None, log_line=log.is_enabled_for(INFO))
            return
        # The work is done: the completer writes this outcome together with the others
        # finishing meanwhile, and reports it once written. Nothing here waits for that, so
        # the slot is free now and cancelling this task can no longer lose the outcome.
        self._completer.add(_Finished(job, outcome, duration_s, timed_out))

    def _report(self, finished: _Finished, status: JobStatus | None, *, log_line: bool) -> None:
        """Metrics and, if ``log_line``, the canonical log line of an attempt whose end is
        known. ``status`` is the job's status as recorded, None when it was not ours any more.
        Callers ask the logger about INFO once per batch: at tens of thousands of jobs a
        second, even asking, let alone building the line, costs."""
        job, outcome, duration_s = finished.job, finished.outcome, finished.duration_s
        self._events.job_finished(job, outcome, status, duration_s, timed_out=finished.timed_out)
        if not log_line:
            return
        # The canonical line of this attempt: everything needed to follow a job in the logs.
        log.info(
            "job_finished",
            job_id=str(job.id),
            type=job.type,
            queue=job.queue,
            attempt=job.attempt,
            outcome=outcome.kind.value,
            status=None if status is None else status.value,
            duration_s=round(duration_s, 6),
            error=loggable_error(outcome.error),
        )

    async def _attempt(self, job: ClaimedJob, started: float) -> tuple[Outcome | None, bool]:
        """Run the handler once. Returns how it ended (None when the job is no longer ours)
        and whether its timeout cut it short."""
        key = (job.id, job.attempt)
        entry = self._active[key]
        try:
            entry.started_at = started
            return await self._run_handler(job, entry)
        except asyncio.CancelledError:
            reason = entry.stop_reason
            if reason is None:
                raise  # not our doing (the event loop is closing): let it propagate
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()  # we asked for this cancellation and have handled it
            if reason is StopReason.CANCEL_REQUESTED:
                return _outcome(job, OutcomeKind.CANCELLED, "cancelled on request"), False
            if reason is StopReason.SHUTDOWN:
                released = "interrupted by worker shutdown; released"
                return _outcome(job, OutcomeKind.RELEASED, released), False
            if reason is StopReason.TIMED_OUT:
                error = f"timed out after {entry.timeout_s:g} s"
                retry_in_s = self._config.backoff.delay(job.attempt)
                return _outcome(job, OutcomeKind.FAILED, error, retry_in_s), True
            return None, False
        finally:
            self._active.pop(key, None)
            self._wake.set()  # a slot is free

    def _snoozed(self, job: ClaimedJob, snooze: Snooze) -> Outcome:
        try:
            # Checked again: a subclass may set seconds itself, and a value out of range
            # would fail the statement recording the whole batch of outcomes.
            seconds = snooze_seconds(snooze.seconds)
        except (TypeError, ValueError) as exc:
            retry_in_s = self._config.backoff.delay(job.attempt)
            return _outcome(job, OutcomeKind.FAILED, error_text(exc), retry_in_s)
        return _outcome(job, OutcomeKind.SNOOZED, retry_in_s=seconds)

    async def _in_thread(self, handler: SyncHandler, job: JobContext) -> object:
        """A sync handler's run, in a thread of this runner's pool (with the caller's context
        variables, as asyncio.to_thread does). If the attempt ends first, the thread keeps its
        slot until it returns; one that had not started yet never will."""
        thread = self._threads.submit(contextvars.copy_context().run, handler, job)
        try:
            # Shielded: cancelled, this await ends, and the thread's future (which cannot stop
            # a running thread) stays to tell when it returns. (shield also retrieves what it
            # returns or raises then, so that asyncio logs nothing.)
            return await asyncio.shield(asyncio.wrap_future(thread))
        except asyncio.CancelledError:
            if not thread.cancel() and not thread.done():
                self._orphans[thread] = self._clock()
                loop = asyncio.get_running_loop()
                thread.add_done_callback(lambda t: _call_soon(loop, self._orphan_returned, t))
            raise

    def _orphan_returned(self, thread: Future[object]) -> None:
        """A thread whose attempt had ended has returned: its slot is free."""
        del self._orphans[thread]
        self._wake.set()

    async def _run_handler(self, job: ClaimedJob, entry: _Active) -> tuple[Outcome, bool]:
        task = self._registry.get(job.type)
        if task is None:
            error = f"no handler registered for job type {job.type!r}"
            return _outcome(job, OutcomeKind.FAILED_FINAL, error), False
        if type(job.payload) is not dict:  # a row written around the API; retrying cannot help
            return _outcome(job, OutcomeKind.FAILED_FINAL, _unrunnable(job.payload)), False
        timeout_s = job.timeout_s or task.timeout_s
        if timeout_s is not None:
            # The row's value may be anything an old bug stored: NaN, negative, infinite.
            if not timeout_s > 0:
                raise ValueError("the job's timeout_s is not a positive number")
            entry.timeout_s = min(timeout_s, MAX_TIMEOUT_S)
            entry.swept = False
        scope: asyncio.Timeout | None = None
        try:
            run = task.run if task.is_async else functools.partial(self._in_thread, task.handler)
            if entry.swept:
                value = await run(JobContext.of(job))
            else:
                scope = asyncio.timeout(entry.timeout_s)
                async with scope:
                    value = await run(JobContext.of(job))
            result = None if value is None else encode_result(value, self._config.max_result_bytes)
        except Snooze as snooze:  # run again later; the attempt is given back, nothing failed
            return self._snoozed(job, snooze), False
        # Any handler error is a failed attempt; so are SystemExit and KeyboardInterrupt (a
        # library calling sys.exit()), which would otherwise leave the event loop and end the
        # worker with every other job. Signals reach the worker through its own handlers
        # (__main__), never as these exceptions. So are GeneratorExit, and a CancelledError the
        # handler raised itself (it awaited a future someone else cancelled): either ended the
        # job's task unrecorded, the job left running until its lease ran out. A cancel of
        # this attempt (a stop, the loop closing) still goes through.
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError) and _cancelled_from_outside(entry):
                raise
            retry_in_s = self._config.backoff.delay(job.attempt)
            if isinstance(exc, TimeoutError) and scope is not None and scope.expired():
                error = f"timed out after {entry.timeout_s:g} s"
                return _outcome(job, OutcomeKind.FAILED, error, retry_in_s), True
            kind = (
                OutcomeKind.FAILED_FINAL if isinstance(exc, PermanentError) else OutcomeKind.FAILED
            )
            error = str(exc)[:MAX_ERROR_CHARS] if isinstance(exc, ResultError) else error_text(exc)
            return _outcome(job, kind, error, retry_in_s), False
        return _outcome(job, OutcomeKind.COMPLETED, result=result), False

    async def _record_outcomes(self, batch: Sequence[_Finished]) -> list[None]:
        """The completer's write: one statement for the batch, then each attempt reported.
        Raises only TransientDatabaseError (an outage, or a deadlock PostgreSQL broke by
        aborting this statement), on which the completer keeps the batch and tries again."""
        refused: set[uuid.UUID] = set()
        try:
            recorded = await self._queue.finish(
                worker_id=self.worker_id, outcomes=[f.outcome for f in batch], settle_now=False
            )
        except TransientDatabaseError:
            raise
        except Exception:
            # Not an outage: the database refused the statement, so retrying it cannot help.
            # Each outcome on its own, then: one the database refuses costs only its own job.
            log.exception("record_outcomes_failed", jobs=len(batch))
            recorded, refused = await self._record_each(batch)
        self._settler.submit(r.job_id for r in recorded if r.dependants_unsettled)
        statuses = {r.job_id: r.status for r in recorded}
        log_lines = log.is_enabled_for(INFO)
        for finished in batch:
            job_id = finished.outcome.job_id
            status = statuses.get(job_id)  # None: no longer leased to us, or refused
            if status is None:
                reason = "refused by the database" if job_id in refused else "lease lost"
                log.warning("job_outcome_discarded", job_id=str(job_id), reason=reason)
            self._report(finished, status, log_line=log_lines)
        # Written outcomes no longer count against the claim (see _free_slots). The claim loop
        # runs once the completer next awaits, by which time it has let go of this batch.
        self._wake.set()
        return [None] * len(batch)

    async def _record_each(
        self, batch: Sequence[_Finished]
    ) -> tuple[list[Recorded], set[uuid.UUID]]:
        """The outcomes of ``batch`` one statement each, after the batch's own failed; and the
        jobs whose outcome the database refused even alone. Those stay leased until their
        leases run out and the rescuer puts them back: delayed, not lost. An outage meanwhile
        is waited out outcome by outcome, as the completer waits out one for a batch: the
        batch itself is not tried again, part of it being written."""
        recorded: list[Recorded] = []
        refused: set[uuid.UUID] = set()
        for finished in batch:
            job_id = finished.outcome.job_id
            for attempt in itertools.count(1):
                try:
                    recorded += await self._queue.finish(
                        worker_id=self.worker_id, outcomes=[finished.outcome], settle_now=False
                    )
                except TransientDatabaseError as exc:
                    delay = TRANSIENT_RETRY.delay(attempt)
                    log.warning("record_outcome_retrying", error=str(exc), retry_in_s=delay)
                    await asyncio.sleep(delay)
                    continue
                except Exception as exc:  # noqa: BLE001 - whatever it is, it is this job's alone
                    # The type only: the batch's line above has the traceback.
                    log.error(  # noqa: TRY400
                        "record_outcome_refused", job_id=str(job_id), error=type(exc).__name__
                    )
                    refused.add(job_id)
                break
        return recorded, refused

    async def _drain(self) -> None:
        """Let running jobs finish within the grace period, release the rest, and write every
        outcome before returning."""
        if self._active:
            grace_s = self._config.shutdown_grace_s
            log.info("worker_draining", running=len(self._active), grace_s=grace_s)
            await asyncio.wait(self._tasks_alive(), timeout=grace_s)
        late = list(self._active.values())
        for entry in late:
            entry.stop(StopReason.SHUTDOWN)
        if late:
            log.warning("worker_releasing_jobs", released=len(late))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RECORD_DEADLINE_S
        if self._active:  # stopped handlers hand in their "released" outcomes
            # Half the time for that, so that writing them still has the other half.
            await asyncio.wait(self._tasks_alive(), timeout=RECORD_DEADLINE_S / 2)
        self._abandon_handlers()
        await self._completer.wait_written(max(deadline - loop.time(), 0.0))
        await self.supervisor.stop()  # the completer first of all: it may hold a batch
        if dropped := self._completer.abandon():
            log.error("outcomes_not_recorded", jobs=dropped, fallback="lease expiry")
        for task in self._tasks_alive():
            task.cancel()

    def _abandon_handlers(self) -> None:
        """Release the jobs of handlers still running after their stop: async ones that
        swallowed the cancel. Their tasks cannot be ended, and they kept the event loop from
        closing, so the process never exited while their jobs sat under leases nobody renewed.
        The process ends them instead (``__main__``, which exits around tasks that ignore
        their cancel), so their jobs go back to pending now, for another worker."""
        for key, entry in list(self._active.items()):
            del self._active[key]
            self._abandoned.add(entry.task)
            job = entry.job
            error = "interrupted by worker shutdown; released"
            if not entry.task.done():  # else cancelled before it ever ran: released all the same
                log.error("job_ignored_cancellation", job_id=str(job.id), type=job.type)
                error = "ignored its cancel at worker shutdown; released"
            released = _outcome(job, OutcomeKind.RELEASED, error)
            started = entry.started_at
            duration_s = 0.0 if started == math.inf else self._clock() - started
            finished = _Finished(job, released, duration_s, timed_out=False)
            # Recorded (and counted) as any released job; the task's own outcome, should
            # its handler ever return, is never handed in (see _execute).
            self._completer.add(finished)

    def _tasks_alive(self) -> set[asyncio.Task[None]]:
        return {entry.task for entry in self._active.values()} | self._abandoned
