"""The job lifecycle: the statuses a job can be in and which ones are final.

pending ──claim──▶ running ──ok──────────────▶ completed
   ▲                  │ error, attempts left
   └──────backoff─────┤
                      └─error, no attempts left▶ failed
pending/running ──cancel──▶ cancelled
failed/cancelled ──retry──▶ pending
"""

from enum import StrEnum


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


# A status from its stored text: a dict lookup, cheaper than JobStatus(text) on a hot path.
STATUS_BY_VALUE = {status.value: status for status in JobStatus}

# No transition leaves these but an explicit retry (failed, cancelled).
FINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})

DEFAULT_QUEUE = "default"
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_PRIORITY = 0
