"""What queuectl prints: JSON (``--output json``: the API's fields, for scripts and jq) or rich
tables for people."""

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from queue_client.models import (
    ApiKey,
    Job,
    JobStatus,
    JobSummary,
    Model,
    QueueInfo,
    Schedule,
    WorkerInfo,
)

STATUS_STYLES: Mapping[str, str] = {
    JobStatus.PENDING: "cyan",
    JobStatus.RUNNING: "yellow",
    JobStatus.COMPLETED: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELLED: "magenta",
}

# markup=False: a table's cells are mostly the tenants' text (a job's type, queue, error), which
# rich would read as markup: "[/x]" in one ended the table in a MarkupError traceback, and
# "[bold]" restyled it. What the code styles is a Text with its style (status, the states).
console = Console(highlight=False, soft_wrap=False, markup=False)
errors = Console(stderr=True, highlight=False)


def plain(value: Model | Sequence[Model] | Mapping[str, Any]) -> Any:  # noqa: ANN401 - JSON
    if isinstance(value, Model):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {k: plain(v) if isinstance(v, Model) else v for k, v in value.items()}
    return [item.to_dict() for item in value]


def emit(
    output: str,
    value: Model | Sequence[Model] | Mapping[str, Any],
    table: Callable[[], RenderableType],
) -> None:
    """Print ``value`` as JSON, or ``table()`` for a person."""
    if output == "json":
        console.out(json.dumps(plain(value), indent=2, ensure_ascii=False), highlight=False)
    else:
        console.print(table())


def when(value: datetime | None) -> str:
    """A time for a table: UTC, to the second."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.1f}s"
    if value < 3600:
        return f"{value / 60:.1f}m"
    return f"{value / 3600:.1f}h"


def status(value: str) -> Text:
    return Text(value, style=STATUS_STYLES.get(value, ""))


def _state(stopped: bool, label: str, otherwise: str) -> Text:  # noqa: FBT001 - the row's state
    """``label`` in red when the row is stopped (paused, revoked), else ``otherwise``."""
    return Text(label, style="red") if stopped else Text(otherwise)


def _table(*columns: str, title: str | None = None) -> Table:
    table = Table(*columns, box=box.SIMPLE_HEAD, title=title, title_justify="left")
    table.columns[0].no_wrap = True
    return table


def details(rows: Iterable[tuple[str, str | Text]]) -> Table:
    table = Table(box=box.SIMPLE, show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for name, value in rows:
        table.add_row(name, value)
    return table


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def job_details(job: Job) -> Table:
    rows: list[tuple[str, str | Text]] = [
        ("id", str(job.id)),
        ("type", job.type),
        ("queue", job.queue),
        ("status", status(job.status)),
        ("attempts", f"{job.attempts}/{job.max_attempts}"),
        ("priority", str(job.priority)),
        ("created", when(job.created_at)),
        ("scheduled", when(job.scheduled_at)),
        ("started", when(job.started_at)),
        ("finished", when(job.finished_at)),
        ("worker", job.worker or "-"),
        ("payload", _json(job.payload)),
        ("result", _json(job.result) if job.result is not None else "-"),
        ("error", job.error_message or "-"),
    ]
    if job.unique_key is not None:
        rows.append(("unique key", job.unique_key))
    if job.concurrency_key is not None:
        rows.append(("concurrency key", job.concurrency_key))
    if job.depends_on:
        waits = ", ".join(
            f"{d.id} ({d.status.value if d.status is not None else 'deleted'})"
            for d in job.depends_on
        )
        rows.append(("depends on", f"{waits}; waiting for {job.waiting_for}"))
    return details(rows)


def jobs_table(jobs: Sequence[JobSummary], *, more: bool) -> Table:
    table = _table("ID", "TYPE", "QUEUE", "STATUS", "ATTEMPTS", "CREATED", "FINISHED", "ERROR")
    for job in jobs:
        table.add_row(
            str(job.id),
            job.type,
            job.queue,
            status(job.status),
            f"{job.attempts}/{job.max_attempts}",
            when(job.created_at),
            when(job.finished_at),
            (job.error_message or "")[:60],
        )
    table.caption = f"{len(jobs)} job(s)" + (" (more: raise --limit)" if more else "")
    return table


def queues_table(
    queues: Sequence[QueueInfo],
    rates: Mapping[str, tuple[str, str]] | None = None,
    title: str | None = None,
) -> Table:
    """The queues; with ``rates`` (watch), jobs finished and failed per minute by queue."""
    columns = ["QUEUE", "DUE", "SCHEDULED", "RUNNING", "OLDEST DUE", "WORKERS", "STATE"]
    if rates is not None:
        columns[6:6] = ["DONE/MIN", "FAILED/MIN"]
    table = _table(*columns, title=title)
    for queue in queues:
        state = _state(queue.paused, "paused", "running")
        row: list[str | Text] = [
            queue.name,
            str(queue.due),
            str(queue.scheduled),
            str(queue.running),
            seconds(queue.oldest_due_age_s) if queue.due else "-",
            str(queue.workers),
            state,
        ]
        if rates is not None:
            row[6:6] = rates.get(queue.name, ("0", "0"))
        table.add_row(*row)
    if not queues:
        table.caption = "no queue has jobs, workers or a pause"
    return table


def workers_table(workers: Sequence[WorkerInfo]) -> Table:
    table = _table("ID", "HOST", "PID", "QUEUES", "TYPES", "CONCURRENCY", "STARTED", "SEEN")
    for worker in workers:
        table.add_row(
            worker.id,
            worker.host,
            str(worker.pid),
            ",".join(worker.queues),
            ",".join(worker.task_types),
            str(worker.concurrency),
            when(worker.started_at),
            when(worker.last_seen_at),
        )
    table.caption = f"{len(workers)} live worker(s)"
    return table


def schedules_table(schedules: Sequence[Schedule]) -> Table:
    table = _table("NAME", "QUEUE", "EVERY", "TZ", "NEXT RUN", "LAST RUN", "STATE")
    for schedule in schedules:
        every = schedule.cron or seconds(schedule.every_s)
        state = _state(schedule.paused, "paused", "active")
        table.add_row(
            schedule.name,
            schedule.queue,
            every,
            schedule.tz,
            when(schedule.next_run_at),
            when(schedule.last_run_at),
            state,
        )
    return table


def keys_table(keys: Sequence[ApiKey]) -> Table:
    table = _table("NAME", "PREFIX", "SCOPES", "QUEUES", "EXPIRES", "LAST USED", "STATE")
    for key in keys:
        state = _state(key.revoked_at is not None, "revoked", "active")
        table.add_row(
            key.name,
            key.prefix,
            ",".join(key.scopes),
            ",".join(key.queues) if key.queues is not None else "all",
            when(key.expires_at),
            when(key.last_used_at),
            state,
        )
    return table
