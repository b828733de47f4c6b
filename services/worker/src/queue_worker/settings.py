"""The worker process's configuration, from environment variables. Every variable, with its
default and bounds: docs/reference/settings.md, generated from this class by `make docs`."""

from pydantic import Field, PositiveFloat, PositiveInt, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from queue_core.limits import MAX_TIMEOUT_S
from queue_core.retention import CLOCK_SLACK_S
from queue_core.settings import CommaList, CommonSettings, EnvSettings, Secret
from queue_core.states import DEFAULT_QUEUE

DEFAULT_TASK_MODULES = ("queue_worker.builtin_tasks",)
# Every attempt is bounded, so no job holds a slot for good: an hour unless a job or its
# handler says otherwise, and never more than a week, whoever asks.
DEFAULT_JOB_TIMEOUT_S = 3600.0
MAX_LEASE_S = 24 * 3600.0
MAX_RETRY_CAP_S = 7 * 24 * 3600.0
# A handler's result is stored in the job's row and read back whole by every status request:
# 64 KiB of JSON by default. Bigger results belong in object storage, with their key here.
DEFAULT_MAX_RESULT_BYTES = 64 * 1024
MAX_RESULT_BYTES = 16 * 1024 * 1024
# Retention (queue_worker.retention): finished jobs are deleted this long after they finished.
# A week of completed and cancelled jobs is enough to look into last week's incident; failures
# are what operators come back to, so a month. 0 keeps a status for good. Any other value is at
# least a minute (queue_core.retention.CLOCK_SLACK_S) and at most ten years.
DAY_S = 24 * 3600.0
DEFAULT_RETENTION_COMPLETED_S = 7 * DAY_S
DEFAULT_RETENTION_FAILED_S = 30 * DAY_S
DEFAULT_RETENTION_CANCELLED_S = 7 * DAY_S
MAX_RETENTION_S = 3650 * DAY_S


class WorkerSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="WORKER_", frozen=True, extra="ignore")

    concurrency: PositiveInt = 10
    queues: CommaList = (DEFAULT_QUEUE,)
    tasks: CommaList = DEFAULT_TASK_MODULES
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"  # noqa: S104 - scraped and probed from outside the container
    poll_interval_s: PositiveFloat = 1.0
    shutdown_grace_s: PositiveFloat = 25.0
    # Bounded so that every timestamp a worker writes (now() + lease, now() + backoff) stays
    # inside the range the jobs table holds (queue_core.limits).
    lease_s: float = Field(default=30.0, gt=0, le=MAX_LEASE_S, allow_inf_nan=False)
    heartbeat_s: PositiveFloat = 5.0
    rescue_interval_s: PositiveFloat = 15.0
    job_timeout_s: float = Field(
        default=DEFAULT_JOB_TIMEOUT_S, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False
    )
    retry_base_s: PositiveFloat = 1.0
    retry_cap_s: float = Field(default=300.0, gt=0, le=MAX_RETRY_CAP_S, allow_inf_nan=False)
    db_pool_size: PositiveInt | None = None
    max_result_bytes: int = Field(default=DEFAULT_MAX_RESULT_BYTES, ge=1, le=MAX_RESULT_BYTES)
    retention_completed_s: float = Field(
        default=DEFAULT_RETENTION_COMPLETED_S, ge=0, le=MAX_RETENTION_S, allow_inf_nan=False
    )
    retention_failed_s: float = Field(
        default=DEFAULT_RETENTION_FAILED_S, ge=0, le=MAX_RETENTION_S, allow_inf_nan=False
    )
    retention_cancelled_s: float = Field(
        default=DEFAULT_RETENTION_CANCELLED_S, ge=0, le=MAX_RETENTION_S, allow_inf_nan=False
    )
    # A round a minute: a job is deleted within about a minute of its retention.
    retention_interval_s: float = Field(default=60.0, gt=0, le=DAY_S, allow_inf_nan=False)
    # Rows per delete statement: each batch locks this many rows for a few milliseconds.
    retention_batch: int = Field(default=1000, ge=1, le=100_000)

    @field_validator("job_timeout_s", mode="before")
    @classmethod
    def _blank_is_default(cls, value: object) -> object:
        return DEFAULT_JOB_TIMEOUT_S if value == "" else value

    @field_validator("retention_completed_s", "retention_failed_s", "retention_cancelled_s")
    @classmethod
    def _retention_off_or_a_minute(cls, value: float) -> float:
        if 0 < value < CLOCK_SLACK_S:
            raise ValueError(f"must be 0 (keep for good) or at least {CLOCK_SLACK_S:g} seconds")
        return value

    @field_validator("queues", "tasks")
    @classmethod
    def _not_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("must name at least one entry (comma-separated)")
        return value

    @model_validator(mode="after")
    def _cap_above_base(self) -> "WorkerSettings":
        if self.retry_cap_s < self.retry_base_s:
            raise ValueError("WORKER_RETRY_CAP_S must be at least WORKER_RETRY_BASE_S")
        # Two heartbeats may be lost (a slow database, a GC pause) before the lease runs out.
        if self.lease_s < 2 * self.heartbeat_s:
            raise ValueError("WORKER_LEASE_S must be at least twice WORKER_HEARTBEAT_S")
        return self

    @property
    def pool_size(self) -> int:
        # Claims, completions and heartbeats share the pool; a few per worker process is plenty
        # because each statement holds a connection for about a millisecond.
        return self.db_pool_size or min(self.concurrency + 2, 10)


class SmtpSettings(EnvSettings):
    """Where the built-in ``send_email`` task delivers. Without SMTP_HOST it only logs.
    The password may come from the file SMTP_PASSWORD_FILE names (a mounted secret)."""

    model_config = SettingsConfigDict(env_prefix="SMTP_", frozen=True, extra="ignore")

    host: str | None = None
    port: int = Field(default=25, ge=1, le=65535)
    username: str | None = None
    password: Secret[str | None] = None
    sender: str = "task-queue@localhost"
    starttls: bool = False
    use_tls: bool = False
    timeout_s: float = Field(default=30.0, gt=0, le=3600, allow_inf_nan=False)

    @field_validator("host", "username", "password", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # compose passes `SMTP_HOST: ${SMTP_HOST:-}`: an empty value means "not configured".
        return None if value == "" else value
