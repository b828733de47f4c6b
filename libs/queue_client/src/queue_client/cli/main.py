"""The ``queuectl`` command line (click). Each command is one or two client calls and a
rendering; errors become one line on stderr and an exit code (``exit_codes``), never a
traceback."""

import functools
import itertools
import json
import math
import sys
import uuid
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import click
import httpx
from click.shell_completion import get_completion_class

from queue_client.calls import check_idempotency_key, shown_url
from queue_client.cli import exit_codes
from queue_client.cli import output as render
from queue_client.cli.config import OUTPUTS, ConfigError, Settings, resolve
from queue_client.cli.durations import parse_duration, parse_instant
from queue_client.cli.watch import watch as run_watch
from queue_client.errors import (
    ConnectionFailedError,
    ForbiddenError,
    QueueError,
    UnauthorizedError,
    WaitTimeoutError,
)
from queue_client.models import (
    MAX_CONCURRENCY_KEY_LENGTH,
    MAX_CONCURRENCY_LIMIT,
    MAX_DEPENDENCIES,
    MAX_KEY_RATE_BURST,
    MAX_KEY_RATE_PER_S,
    MIN_RATE_PER_S,
    EnqueueOptions,
    Job,
    JobFilter,
    JobStatus,
    Scope,
)
from queue_client.retrying import RetryPolicy
from queue_client.sync_client import Client

F = TypeVar("F", bound=Callable[..., Any])

MAX_PAYLOAD_BYTES: Final = 10 * 1024 * 1024  # a payload file larger than this is a mistake
DEFAULT_LIST_LIMIT: Final = 50
DEFAULT_BULK_LIMIT: Final = 1000
MAX_BULK_LIMIT: Final = 10_000  # the API's own bound
# The statuses a bulk action touches when none is given (the API's defaults).
BULK_STATUSES: Final = {
    "cancel": [JobStatus.PENDING, JobStatus.RUNNING],
    "retry": [JobStatus.FAILED, JobStatus.CANCELLED],
}
# A person waits at the terminal: fewer, shorter retries than a service's.
CLI_RETRY: Final = RetryPolicy(attempts=3, max_delay_s=2.0, max_retry_after_s=10.0)
_STATUS_CHOICE = click.Choice([s.value for s in JobStatus])


@dataclass
class State:
    """What the group's options settle, for every command."""

    flags: dict[str, Any]
    config: str | None
    _settings: Settings | None = None
    _clients: list[Client] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = resolve(flags=self.flags, config=self.config)
        return self._settings

    def output(self, override: str | None) -> str:
        return override or self.settings.output

    def client(self, retry: RetryPolicy = CLI_RETRY) -> Client:
        s = self.settings
        client = Client(s.url, s.api_key, timeout_s=s.timeout_s, retry=retry)
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()


def _hint(error: QueueError, settings: Settings | None) -> str:
    url = shown_url(settings.url) if settings is not None else "the API"
    if isinstance(error, ConnectionFailedError):
        return f"{error}; is the API running at {url}? (--url / QUEUE_URL)"
    if isinstance(error, UnauthorizedError):
        return f"{error} (check the API key: --api-key / QUEUE_API_KEY)"
    if isinstance(error, ForbiddenError):
        return f"{error} (this API key lacks the scope or the queue)"
    return str(error)


def _fail(message: str) -> None:
    """One line on stderr: never wrapped, whatever the terminal's width."""
    click.echo(f"queuectl: error: {' '.join(message.split())}", err=True)


class QueuectlGroup(click.Group):
    """Maps the client's errors to one line on stderr and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:  # noqa: ANN401 - click's own signature
        try:
            return super().invoke(ctx)
        except QueueError as exc:
            state = ctx.find_object(State)
            settings = None
            with suppress(ConfigError):
                settings = state.settings if state is not None else None
            _fail(_hint(exc, settings))
            ctx.exit(exit_codes.for_error(exc))
        except ConfigError as exc:
            _fail(str(exc))
            ctx.exit(exit_codes.USAGE)
        except click.Abort:
            _fail("aborted, nothing changed")
            ctx.exit(exit_codes.API_ERROR)
        except KeyboardInterrupt:
            # Not "nothing changed": a request may have reached the API before Ctrl-C.
            _fail("interrupted")
            ctx.exit(exit_codes.INTERRUPTED)
        except httpx.HTTPError as exc:  # what the client does not wrap: an undecodable answer
            _fail(f"{type(exc).__name__}: {exc}")
            ctx.exit(exit_codes.UNAVAILABLE)


def output_option(func: F) -> F:
    return click.option(
        "--output",
        "-o",
        type=click.Choice(OUTPUTS),
        default=None,
        help="table (default) or json; also `output` in the config file.",
    )(func)


def _state(ctx: click.Context) -> State:
    state = ctx.find_object(State)
    if state is None:  # only when a command is invoked without the group
        raise click.UsageError("run commands through `queuectl`")
    return state


@click.group(cls=QueuectlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url", default=None, help="The API's base URL [env QUEUE_URL; default http://127.0.0.1:8080]."
)
@click.option("--api-key", default=None, help="API key [env QUEUE_API_KEY].")
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    help="Config file [env QUEUECTL_CONFIG; default ~/.config/queuectl/config.toml].",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(0, 3600, min_open=True),
    default=None,
    help="Seconds per request [default 10].",
)
@output_option
@click.version_option(package_name="queue-client", prog_name="queuectl")
@click.pass_context
def cli(  # noqa: PLR0913 - one parameter per option
    ctx: click.Context,
    *,
    url: str | None,
    api_key: str | None,
    config: str | None,
    timeout_s: float | None,
    output: str | None,
) -> None:
    """Drive the task queue's API from a terminal.

    Settings: flags, then QUEUE_URL / QUEUE_API_KEY, then the config file. Exit codes: 0 ok,
    1 the API refused, 2 usage, 3 not found, 4 auth, 5 API unavailable; with --wait, 6 the
    job failed or was cancelled, 7 it had not finished in time; 130 interrupted.
    """
    flags = {"url": url, "api_key": api_key, "timeout_s": timeout_s, "output": output}
    state = State(flags=flags, config=config)
    ctx.obj = state
    ctx.call_on_close(state.close)


# -- jobs --------------------------------------------------------------------------------------


def _payload(text: str) -> dict[str, Any]:
    """``--payload``: JSON, or @FILE, or @- for stdin."""
    if text.startswith("@"):
        name = text[1:]
        try:
            raw = sys.stdin.read(MAX_PAYLOAD_BYTES + 1) if name == "-" else _read_file(name)
        except OSError as exc:
            raise click.BadParameter(f"cannot read {name}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise click.BadParameter(f"{name} is not UTF-8 text") from None
        if len(raw) > MAX_PAYLOAD_BYTES:
            raise click.BadParameter(f"{name} is larger than {MAX_PAYLOAD_BYTES} bytes")
        text = raw
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except ValueError as exc:  # JSONDecodeError, or one of the two below
        raise click.BadParameter(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise click.BadParameter("the payload must be a JSON object")
    return value


def _no_constant(name: str) -> float:
    """Python reads NaN and Infinity, which are not JSON: sent, they would become null."""
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: read as infinity, sent as null
        raise ValueError(f"{text} is too large for a JSON number")
    return value


def _read_file(name: str) -> str:
    with Path(name).open(encoding="utf-8") as file:
        return file.read(MAX_PAYLOAD_BYTES + 1)


def _idempotency_key(value: str | None) -> str | None:
    try:
        return None if value is None else check_idempotency_key(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _instant(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _limits(
    concurrency_key: str | None,
    concurrency_limit: int | None,
    rate_limit: float | None,
    rate_burst: int | None,
    depends_on: tuple[uuid.UUID, ...],
) -> EnqueueOptions:
    """The limit and dependency options, checked as the API checks them."""
    options: EnqueueOptions = {}
    if concurrency_key is not None:
        if not 1 <= len(concurrency_key) <= MAX_CONCURRENCY_KEY_LENGTH:
            raise click.BadParameter(
                f"1 to {MAX_CONCURRENCY_KEY_LENGTH} characters", param_hint="--concurrency-key"
            )
        options["concurrency_key"] = concurrency_key
    elif concurrency_limit is not None or rate_limit is not None:
        raise click.UsageError("--concurrency-limit and --rate-limit need --concurrency-key")
    if rate_burst is not None and rate_limit is None:
        raise click.UsageError("--rate-burst needs --rate-limit")
    if len(depends_on) > MAX_DEPENDENCIES:
        raise click.BadParameter(f"at most {MAX_DEPENDENCIES}", param_hint="--depends-on")
    if concurrency_limit is not None:
        options["concurrency_limit"] = concurrency_limit
    if rate_limit is not None:
        options["rate_limit"] = rate_limit
    if rate_burst is not None:
        options["rate_burst"] = rate_burst
    if depends_on:
        options["depends_on"] = list(depends_on)
    return options


@cli.command()
@click.argument("job_type", metavar="TYPE")
@click.option("--payload", "-p", default="{}", help="A JSON object, @FILE or @- (stdin).")
@click.option("--queue", "-q", default=None, help="Queue [default: the API's, `default`].")
@click.option("--priority", type=click.IntRange(-32768, 32767), default=None)
@click.option("--at", "at", default=None, help="Run at: RFC 3339 time, or +DURATION (+10m).")
@click.option("--max-attempts", type=click.IntRange(1, 1000), default=None)
@click.option("--unique-key", default=None, help="At most one pending/running job with this key.")
@click.option(
    "--idempotency-key",
    default=None,
    callback=lambda _ctx, _param, value: _idempotency_key(value),
    help="Default: a new UUID per command.",
)
@click.option(
    "--concurrency-key",
    type=click.STRING,
    default=None,
    help="Limit group: the limits below hold for all its jobs across every worker.",
)
@click.option(
    "--concurrency-limit",
    type=click.IntRange(1, MAX_CONCURRENCY_LIMIT),
    default=None,
    help="With --concurrency-key: at most this many of its jobs run at once.",
)
@click.option(
    "--rate-limit",
    type=click.FloatRange(MIN_RATE_PER_S, MAX_KEY_RATE_PER_S),
    default=None,
    help="With --concurrency-key: at most this many of its jobs start a second.",
)
@click.option(
    "--rate-burst",
    type=click.IntRange(1, MAX_KEY_RATE_BURST),
    default=None,
    help="With --rate-limit: starts allowed at once [default: 1 s worth].",
)
@click.option(
    "--depends-on",
    type=click.UUID,
    multiple=True,
    help="Run only once this job completed (repeat for several).",
)
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Wait up to this many seconds for the job to finish.",
)
@output_option
@click.pass_context
def enqueue(  # noqa: PLR0913 - one parameter per option
    ctx: click.Context,
    *,
    job_type: str,
    payload: str,
    queue: str | None,
    priority: int | None,
    at: str | None,
    max_attempts: int | None,
    unique_key: str | None,
    idempotency_key: str | None,
    concurrency_key: str | None,
    concurrency_limit: int | None,
    rate_limit: float | None,
    rate_burst: int | None,
    depends_on: tuple[uuid.UUID, ...],
    wait_s: float | None,
    output: str | None,
) -> None:
    """Enqueue a job of TYPE; prints it (with --wait: once finished)."""
    state = _state(ctx)
    options: EnqueueOptions = _limits(
        concurrency_key, concurrency_limit, rate_limit, rate_burst, depends_on
    )
    if queue is not None:
        options["queue"] = queue
    if priority is not None:
        options["priority"] = priority
    scheduled_at = _instant(at)
    if scheduled_at is not None:
        options["scheduled_at"] = scheduled_at
    if max_attempts is not None:
        options["max_attempts"] = max_attempts
    if unique_key is not None:
        options["unique_key"] = unique_key
    if idempotency_key is not None:
        options["idempotency_key"] = idempotency_key
    client = state.client()
    enqueued = client.enqueue(job_type, _payload(payload), **options)
    job, unfinished = enqueued.job, None
    if wait_s is not None:
        job, unfinished = _wait(client, job.id, wait_s)
    out = state.output(output)
    render.emit(
        out,
        {"outcome": enqueued.outcome.value, "job": job} if out == "json" else job,
        lambda: render.job_details(job),
    )
    if enqueued.outcome.value != "created" and out == "table":
        render.errors.print(f"not new: {enqueued.outcome.value}", markup=False)
    _exit_if(ctx, unfinished)


@cli.command()
@click.argument("job_id", metavar="ID")
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Wait up to this many seconds for it to finish.",
)
@output_option
@click.pass_context
def status(ctx: click.Context, job_id: str, wait_s: float | None, output: str | None) -> None:
    """Show a job, every field."""
    state = _state(ctx)
    client = state.client()
    job, unfinished = (
        (client.get_job(job_id), None) if wait_s is None else _wait(client, job_id, wait_s)
    )
    render.emit(state.output(output), job, lambda: render.job_details(job))
    _exit_if(ctx, unfinished)


# Why a --wait did not end in a completed job: the exit code and the line for stderr.
_Unfinished = tuple[int, str]


def _wait(client: Client, job_id: uuid.UUID | str, wait_s: float) -> tuple[Job, _Unfinished | None]:
    """The job once finished, or as last seen when ``wait_s`` ran out. It is printed either way;
    the exit code then tells a script whether it completed, so that
    `queuectl enqueue … --wait 60 && next-step` stops at a failure."""
    try:
        job = client.wait(job_id, timeout_s=wait_s)
    except WaitTimeoutError as exc:
        return exc.job, (
            exit_codes.WAIT_TIMED_OUT,
            f"job {exc.job.id} is still {exc.job.status.value} after {wait_s:g} s",
        )
    if job.status is JobStatus.COMPLETED:
        return job, None
    return job, (exit_codes.JOB_NOT_COMPLETED, f"job {job.id} {job.status.value}")


def _exit_if(ctx: click.Context, unfinished: _Unfinished | None) -> None:
    if unfinished is not None:
        code, line = unfinished
        _fail(line)
        ctx.exit(code)


def filter_options(func: Callable[..., None]) -> Callable[..., None]:
    """The job filter options (--status, --type, --queue, --since) of every command that picks
    jobs by them, handed to the command as one ``where: JobFilter``."""

    @functools.wraps(func)
    def command(
        *args: Any,  # noqa: ANN401 - passed on as click gives them
        statuses: tuple[str, ...],
        types: tuple[str, ...],
        queues: tuple[str, ...],
        since: str | None,
        **kwargs: Any,  # noqa: ANN401 - passed on as click gives them
    ) -> None:
        func(*args, where=_filter(statuses, types, queues, since), **kwargs)

    for option in reversed(
        [
            click.option(
                "--status", "-s", "statuses", multiple=True, type=_STATUS_CHOICE, help="Repeatable."
            ),
            click.option("--type", "-t", "types", multiple=True, help="Job type; repeatable."),
            click.option("--queue", "-q", "queues", multiple=True, help="Repeatable."),
            click.option(
                "--since", default=None, help="Created within this long: 90s, 15m, 1h, 2d."
            ),
        ]
    ):
        command = option(command)
    return command


def _filter(
    statuses: Sequence[str], types: Sequence[str], queues: Sequence[str], since: str | None
) -> JobFilter:
    where: JobFilter = {}
    if statuses:
        where["status"] = list(statuses)
    if types:
        where["type"] = list(types)
    if queues:
        where["queue"] = list(queues)
    if since is not None:
        try:
            where["created_after"] = datetime.now(UTC) - parse_duration(since)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--since") from None
    return where


@cli.command(name="list")
@filter_options
@click.option(
    "--limit", "-n", type=click.IntRange(1, 100_000), default=DEFAULT_LIST_LIMIT, show_default=True
)
@output_option
@click.pass_context
def list_jobs(ctx: click.Context, *, where: JobFilter, limit: int, output: str | None) -> None:
    """List jobs, newest first."""
    state = _state(ctx)
    jobs_iter = state.client().iter_jobs(page_size=min(limit + 1, 1000), **where)
    jobs = list(itertools.islice(jobs_iter, limit + 1))
    more = len(jobs) > limit
    shown = jobs[:limit]
    render.emit(state.output(output), shown, lambda: render.jobs_table(shown, more=more))


def _bulk(  # noqa: PLR0913 - the command's options, passed on
    ctx: click.Context,
    *,
    action: str,
    job_id: str | None,
    where: JobFilter,
    limit: int,
    yes: bool,
    out: str | None,
) -> None:
    state = _state(ctx)
    client = state.client()
    if job_id is not None:
        if where:
            raise click.UsageError(f"give a job ID or filters to {action}, not both")
        if action == "cancel":
            client.cancel_job(job_id)
        else:
            client.retry_job(job_id)
        # The job as GET /v1/jobs/{id} shows it, like every other command's JSON (the action's
        # own answer is the seed's PascalCase object).
        job = client.get_job(job_id)
        render.emit(state.output(out), job, lambda: render.job_details(job))
        return
    if not where:
        raise click.UsageError(
            f"give a job ID, or filters (--status, --type, --queue, --since) to {action} in bulk"
        )
    if not yes:
        count_where: JobFilter = {**where}
        count_where.setdefault("status", list(BULK_STATUSES[action]))
        matching = sum(
            1 for _ in itertools.islice(client.iter_jobs(page_size=1000, **count_where), limit)
        )
        if matching == 0:
            render.errors.print(f"no job to {action} matches", markup=False)
            render.emit(state.output(out), {"affected": 0}, lambda: "0 job(s)")
            return
        click.confirm(f"{action.capitalize()} {matching} job(s)?", abort=True, err=True)
    if action == "cancel":
        affected = client.cancel_jobs(limit=limit, **where)
    else:
        affected = client.retry_jobs(limit=limit, **where)
    past = "cancelled" if action == "cancel" else "retried"
    render.emit(state.output(out), {"affected": affected}, lambda: f"{affected} job(s) {past}")


def _bulk_command(action: str, summary: str) -> click.Command:
    @click.argument("job_id", metavar="[ID]", required=False)
    @filter_options
    @click.option(
        "--limit",
        "-n",
        type=click.IntRange(1, MAX_BULK_LIMIT),
        default=DEFAULT_BULK_LIMIT,
        show_default=True,
        help="Bulk: act on at most this many.",
    )
    @click.option("--yes", "-y", is_flag=True, help="Bulk: do not ask for confirmation.")
    @output_option
    @click.pass_context
    def command(  # noqa: PLR0913 - one parameter per option
        ctx: click.Context,
        *,
        job_id: str | None,
        where: JobFilter,
        limit: int,
        yes: bool,
        output: str | None,
    ) -> None:
        _bulk(ctx, action=action, job_id=job_id, where=where, limit=limit, yes=yes, out=output)

    command.__doc__ = summary
    return cli.command(name=action)(command)


_bulk_command(
    "cancel",
    "Cancel a job by ID, or every pending or running job the filters match (asks first).",
)
_bulk_command(
    "retry",
    "Run a failed or cancelled job again by ID, or every one the filters match (asks first).",
)


# -- queues, workers, schedules ----------------------------------------------------------------


@cli.command()
@output_option
@click.pass_context
def queues(ctx: click.Context, output: str | None) -> None:
    """List the queues: depth, workers, pause."""
    state = _state(ctx)
    found = state.client().list_queues()
    render.emit(state.output(output), found, lambda: render.queues_table(found))


def _pause_command(paused: bool) -> click.Command:  # noqa: FBT001 - a factory's switch
    @click.argument("queue")
    @output_option
    @click.pass_context
    def command(ctx: click.Context, queue: str, output: str | None) -> None:
        state = _state(ctx)
        client = state.client()
        result = client.pause_queue(queue) if paused else client.resume_queue(queue)
        word = "paused" if result.paused else "running"
        render.emit(state.output(output), result, lambda: f"queue {result.name}: {word}")

    command.__doc__ = (
        "Pause QUEUE: workers stop claiming its jobs (enqueueing goes on)."
        if paused
        else "Resume a paused QUEUE."
    )
    return cli.command(name="pause" if paused else "resume")(command)


_pause_command(paused=True)
_pause_command(paused=False)


@cli.command()
@output_option
@click.pass_context
def workers(ctx: click.Context, output: str | None) -> None:
    """List the live workers."""
    state = _state(ctx)
    found = state.client().list_workers()
    render.emit(state.output(output), found, lambda: render.workers_table(found))


@cli.group(invoke_without_command=True)
@output_option
@click.pass_context
def schedules(ctx: click.Context, output: str | None) -> None:
    """List the schedules (periodic jobs); `schedules pause|resume NAME`."""
    if ctx.invoked_subcommand is not None:
        return
    state = _state(ctx)
    found = state.client().list_schedules()
    render.emit(state.output(output), found, lambda: render.schedules_table(found))


def _schedule_command(paused: bool) -> click.Command:  # noqa: FBT001 - a factory's switch
    @click.argument("name")
    @output_option
    @click.pass_context
    def command(ctx: click.Context, name: str, output: str | None) -> None:
        state = _state(ctx)
        client = state.client()
        found = client.pause_schedule(name) if paused else client.resume_schedule(name)
        render.emit(state.output(output), found, lambda: render.schedules_table([found]))

    command.__doc__ = "Pause the schedule NAME." if paused else "Resume the schedule NAME."
    return schedules.command(name="pause" if paused else "resume")(command)


_schedule_command(paused=True)
_schedule_command(paused=False)


# -- API keys ----------------------------------------------------------------------------------


@cli.group()
def keys() -> None:
    """Create, list and revoke API keys (scope keys:admin)."""


@keys.command(name="create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice([s.value for s in Scope]),
    help="Repeatable.",
)
@click.option(
    "--queue", "queues", multiple=True, help="Only these queues; repeatable [default: all]."
)
@click.option("--expires-in-days", type=click.IntRange(1, 3650), default=None)
@output_option
@click.pass_context
def keys_create(  # noqa: PLR0913 - one parameter per option
    ctx: click.Context,
    *,
    name: str,
    scopes: tuple[str, ...],
    queues: tuple[str, ...],
    expires_in_days: int | None,
    output: str | None,
) -> None:
    """Create the key NAME; its secret is printed this once."""
    state = _state(ctx)
    created = state.client().create_key(
        name, scopes, queues=list(queues) or None, expires_in_days=expires_in_days
    )
    render.emit(
        state.output(output),
        created,
        lambda: render.details(
            [("name", created.name), ("scopes", ",".join(created.scopes)), ("key", created.key)]
        ),
    )
    render.errors.print("the key is shown this once: store it now", markup=False)


@keys.command(name="list")
@output_option
@click.pass_context
def keys_list(ctx: click.Context, output: str | None) -> None:
    """List the keys (never their secrets)."""
    state = _state(ctx)
    found = state.client().list_keys()
    render.emit(state.output(output), found, lambda: render.keys_table(found))


@keys.command(name="revoke")
@click.argument("name_or_prefix", metavar="NAME|PREFIX")
@output_option
@click.pass_context
def keys_revoke(ctx: click.Context, name_or_prefix: str, output: str | None) -> None:
    """Revoke a key by its name or prefix."""
    state = _state(ctx)
    revoked = state.client().revoke_key(name_or_prefix)
    render.emit(state.output(output), revoked, lambda: render.keys_table([revoked]))


# -- watch, completion -------------------------------------------------------------------------


@cli.command()
@click.option(
    "--interval",
    "-i",
    type=click.FloatRange(0.2, 3600),
    default=2.0,
    show_default=True,
    help="Seconds between refreshes.",
)
@click.pass_context
def watch(ctx: click.Context, interval: float) -> None:
    """A live table of the queues and their rates; Ctrl-C to leave."""
    state = _state(ctx)
    # Few retries: a frame that fails shows the error and the next one tries again.
    client = state.client(RetryPolicy(attempts=2, max_delay_s=1.0))
    run_watch(client, interval, render.console)


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script: eval "$(queuectl completion bash)"."""
    completion_class = get_completion_class(shell)
    if completion_class is None:  # click knows all three
        raise click.UsageError(f"no completion for {shell}")
    root = ctx.find_root()
    script = completion_class(cli, {}, root.info_name or "queuectl", "_QUEUECTL_COMPLETE")
    click.echo(script.source())


def main() -> None:
    cli(prog_name="queuectl")
