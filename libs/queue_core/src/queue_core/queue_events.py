"""What the queue reports of the failures it works around without raising: the services give
:class:`~queue_core.queue.Queue` an implementation that counts them in their metrics (the
worker's and the API's), so that ``queue_core`` itself knows nothing of Prometheus. Each is
also a warning in the log, with the details."""

from typing import Literal, Protocol

# Why the repair sweep changed a waiting job (Queue.fail_orphaned_dependants,
# Queue.release_miscounted_dependants): a dependency deleted by hand, or a count no edge backs.
RepairReason = Literal["orphaned", "miscounted"]
REPAIR_REASONS: tuple[RepairReason, ...] = ("orphaned", "miscounted")


class QueueEvents(Protocol):
    def keyed_claim_turn_timed_out(self) -> None:
        """A keyed claim waited ``KEYED_TURN_WAIT_S`` for its turn and took plain jobs alone:
        another claimer held the turn that long (a stalled worker, or a database that is)."""

    def dependants_not_settled(self, jobs: int) -> None:
        """Settling the dependants of ``jobs`` finished jobs failed (a lock held past
        ``SETTLE_LOCK_TIMEOUT_S``, the database away); the sweep settles them later."""

    def dependants_repaired(self, reason: RepairReason, jobs: int) -> None:
        """The repair sweep changed ``jobs`` waiting jobs that a hand edit left waiting for
        ever: failed (``orphaned``: a dependency no longer exists) or made due
        (``miscounted``: no dependency left to complete)."""


class NoQueueEvents:
    """The default: report nothing."""

    def keyed_claim_turn_timed_out(self) -> None:
        pass

    def dependants_not_settled(self, jobs: int) -> None:
        pass

    def dependants_repaired(self, reason: RepairReason, jobs: int) -> None:
        pass
