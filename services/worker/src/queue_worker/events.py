"""What the worker reports as it runs jobs. The runner, the rescuer and the supervisor call
these hooks; the Prometheus metrics implement them (metrics.py), and tests may record them.
Keeping the seam here means the claim loop knows nothing of Prometheus."""

from collections.abc import Sequence
from typing import Protocol

from queue_core.jobs import ClaimedJob, Outcome, Rescued
from queue_core.queue_events import NoQueueEvents, QueueEvents
from queue_core.states import JobStatus


class WorkerEvents(QueueEvents, Protocol):
    def job_started(self, job: ClaimedJob) -> None: ...

    def job_finished(
        self,
        job: ClaimedJob,
        outcome: Outcome,
        status: JobStatus | None,
        duration_s: float,
        *,
        timed_out: bool,
    ) -> None:
        """``status`` is the job's status once recorded; None when our lease was lost."""

    def heartbeat_failed(self) -> None: ...

    def database_reconnected(self, component: str) -> None: ...

    def jobs_rescued(self, rescued: Sequence[Rescued]) -> None: ...

    def service_up(self, service: str, *, up: bool) -> None:
        """A supervised service's ``run()`` started (True) or ended (False)."""

    def service_failed(self, service: str, kind: str) -> None:
        """A service's ``run()`` raised: ``kind`` is "transient" or "crash"."""

    def service_restarted(self, service: str) -> None: ...


class NoEvents(NoQueueEvents):
    """The default: report nothing."""

    def job_started(self, job: ClaimedJob) -> None:
        pass

    def job_finished(
        self,
        job: ClaimedJob,
        outcome: Outcome,
        status: JobStatus | None,
        duration_s: float,
        *,
        timed_out: bool,
    ) -> None:
        pass

    def heartbeat_failed(self) -> None:
        pass

    def database_reconnected(self, component: str) -> None:
        pass

    def jobs_rescued(self, rescued: Sequence[Rescued]) -> None:
        pass

    def service_up(self, service: str, *, up: bool) -> None:
        pass

    def service_failed(self, service: str, kind: str) -> None:
        pass

    def service_restarted(self, service: str) -> None:
        pass
