"""``queuectl watch``: the queues, refreshed in place, with how many jobs each finished and
failed in the last minute. An API that stops answering is shown in the header, and the watch
goes on: an operator watches precisely when things break. Ctrl-C ends it (exit code 0).
"""

import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from queue_client.cli.output import queues_table
from queue_client.errors import QueueError
from queue_client.models import JobStatus
from queue_client.sync_client import Client

RATE_WINDOW: Final = timedelta(minutes=1)
# One page of the jobs finished in the window: beyond it, the rate shows as "≥ …".
RATE_SAMPLE: Final = 1000


def _rates(client: Client, now: datetime) -> dict[str, tuple[str, str]]:
    page = client.list_jobs(
        status=[JobStatus.COMPLETED, JobStatus.FAILED],
        finished_after=now - RATE_WINDOW,
        limit=RATE_SAMPLE,
    )
    counts = Counter((job.queue, job.status) for job in page.jobs)
    floor = "≥" if page.next_cursor is not None else ""
    queues = {queue for queue, _ in counts}
    return {
        q: (f"{floor}{counts[q, JobStatus.COMPLETED]}", f"{floor}{counts[q, JobStatus.FAILED]}")
        for q in queues
    }


def snapshot(client: Client, interval_s: float) -> RenderableType:
    """One frame: a header line and the queues table (or the error that stopped it)."""
    now = datetime.now(UTC)
    header = f"queuectl watch  {client.base_url}  every {interval_s:g}s  {now:%H:%M:%S}Z"
    try:
        queues = client.list_queues()
        rates = _rates(client, now)
        workers = len(client.list_workers())
    except QueueError as exc:
        return Group(Text(header, style="bold"), Text(f"API error: {exc}", style="bold red"))
    table = queues_table(queues, rates, title=f"{workers} live worker(s)")
    return Group(Text(header, style="bold"), table)


def watch(
    client: Client,
    interval_s: float,
    console: Console,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    try:
        with Live(
            snapshot(client, interval_s), console=console, auto_refresh=False, transient=False
        ) as live:
            while True:
                sleep(interval_s)
                live.update(snapshot(client, interval_s), refresh=True)
    except KeyboardInterrupt:
        return
