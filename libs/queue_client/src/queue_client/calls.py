"""Every endpoint once, without I/O: what to send (a ``Call``) and how to read the answer. The
sync and async clients only send a ``Call`` (with retries) and hand the answer to its
``decode``; an endpoint added here is one line in each of them.
"""

import math
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Generic, TypeVar, cast
from urllib.parse import quote
from uuid import UUID

import httpx
import msgspec

from queue_client.errors import UnexpectedResponseError, error_for
from queue_client.models import (
    IDEMPOTENCY_KEY_PATTERN,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    ApiKey,
    BatchEnqueued,
    BulkResult,
    CreatedApiKey,
    Enqueued,
    EnqueueOptions,
    Job,
    JobFilter,
    JobPage,
    JobStatusRecord,
    KeyLimits,
    NewJob,
    Outcome,
    QueueInfo,
    QueuePause,
    Schedule,
    WorkerInfo,
)

T = TypeVar("T")
HttpT = TypeVar("HttpT", httpx.Client, httpx.AsyncClient)

IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
DEFAULT_TIMEOUT_S: Final = 10.0  # per request, for a client not given an httpx client
_VERSION: Final = "0.1.0"
MAX_WAIT_S: Final = 60.0  # the longest ?wait= the API takes
# Beyond a long poll's own wait: time for the API to answer once the job finishes.
WAIT_SLACK_S: Final = 10.0
# The largest answer read. The API's largest, a job with its payload and result, is a few MiB;
# a larger one (a URL that serves a file, say) is refused before it fills the memory.
MAX_ANSWER_BYTES: Final = 64 * 1024 * 1024


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and how to read its answer."""

    method: str
    path: str
    decode: Callable[[httpx.Response], T]
    params: list[tuple[str, str]] = field(default_factory=list)
    body: Any = None  # sent as JSON unless None
    headers: Mapping[str, str] = field(default_factory=dict)
    # Safe to send again when no answer came (the API may have acted on the first).
    idempotent: bool = False
    # Retried on 429 and 503; off for probes, whose 503 is the answer, and for bulk actions,
    # whose 503 may come after some of their batches were committed.
    retry_statuses: bool = True
    timeout_s: float | None = None  # the read timeout, when not the client's
    # A time.monotonic() past which no retry starts: the caller's own deadline (wait()).
    deadline: float | None = None

    def build(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        """The request, built by either client (both take the same arguments)."""
        headers = dict(self.headers)
        content = None
        if self.body is not None:
            content = _json(self.body)
            headers["Content-Type"] = "application/json"
        timeout: Any = httpx.USE_CLIENT_DEFAULT
        if self.timeout_s is not None:
            timeout = http.timeout
            timeout = httpx.Timeout(
                connect=timeout.connect,
                read=max(self.timeout_s, timeout.read or 0),
                write=timeout.write,
                pool=timeout.pool,
            )
        return http.build_request(
            self.method,
            self.path,
            params=tuple(self.params),
            content=content,
            headers=headers,
            timeout=timeout,
        )


def _json(body: Any) -> bytes:  # noqa: ANN401 - any JSON value
    """``body`` as JSON, or ValueError if it holds a NaN or an infinity: msgspec writes those
    as null, which would change the payload the API stores without a word."""
    content = msgspec.json.encode(body)
    if b"null" in content and not _finite(msgspec.to_builtins(body)):
        raise ValueError("NaN and infinity have no form in JSON: send null or a number")
    return content


def _finite(value: Any) -> bool:  # noqa: ANN401 - any JSON value
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_finite(v) for v in value)
    return True


class Answer:
    """An answer's body, fed in as it arrives (``send(..., stream=True)``), within bounds: at
    most ``MAX_ANSWER_BYTES``, and all of it within the request's read timeout of its headers.
    httpx's own read timeout bounds each read only, so a body that trickles in a byte at a time
    would hold the caller for as long as it lasts."""

    def __init__(
        self, streamed: httpx.Response, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._streamed = streamed
        self._clock = clock
        read_s = streamed.request.extensions.get("timeout", {}).get("read")
        self._deadline = None if read_s is None else clock() + read_s
        self._chunks: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        request = self._streamed.request
        self._size += len(chunk)
        if self._size > MAX_ANSWER_BYTES:
            raise UnexpectedResponseError(
                f"{request.method} {request.url.path}: an answer larger than"
                f" {MAX_ANSWER_BYTES} bytes",
                status=self._streamed.status_code,
            )
        if self._deadline is not None and self._clock() > self._deadline:
            raise httpx.ReadTimeout("the answer's body outlasted the read timeout", request=request)
        self._chunks.append(chunk)

    def whole(self) -> httpx.Response:
        """The answer, read (its body decoded as its Content-Encoding says)."""
        streamed = self._streamed
        response = httpx.Response(
            streamed.status_code,
            headers=streamed.headers,
            content=b"".join(self._chunks),
            request=streamed.request,
            extensions=streamed.extensions,
        )
        response.read()
        return response


def set_up(http: HttpT, base_url: str, api_key: str | None) -> HttpT:
    """``http``, given to a client: pointed at ``base_url``, with the headers every request
    carries, except any the caller set on it already."""
    http.base_url = httpx.URL(base_url)
    headers = {"User-Agent": f"queue-client/{_VERSION}", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    for name, value in headers.items():
        http.headers.setdefault(name, value)
    return http


def shown_url(url: httpx.URL | str) -> str:
    """``url`` without its user and password (a proxy's basic auth): for messages and
    screens, never the secret in it."""
    return str(httpx.URL(url).copy_with(userinfo=b""))


def _decoder(kind: type[T], *, field_name: str | None = None) -> Callable[[httpx.Response], T]:
    """Decode a 2xx body as ``kind`` (inside ``{field_name: ...}`` if given); raise the API's
    error for any other status."""

    # The list inside its object ({"queues": [...]}): a Struct, so fields added later are ignored.
    wrapper = None if field_name is None else msgspec.defstruct("Wrapped", [(field_name, kind)])

    def decode(response: httpx.Response) -> T:
        check(response)
        try:
            decoded = msgspec.json.decode(response.content, type=wrapper or kind)
        except msgspec.DecodeError as exc:
            raise UnexpectedResponseError(
                f"{response.request.method} {response.request.url.path}: {exc}",
                status=response.status_code,
            ) from None
        if field_name is not None:
            decoded = getattr(decoded, field_name)
        return cast("T", decoded)

    return decode


def check(response: httpx.Response) -> None:
    if not response.is_success:
        raise error_for(response)


def _no_content(response: httpx.Response) -> None:
    check(response)


def _ready(response: httpx.Response) -> bool:
    if response.status_code == 503:
        return False
    check(response)
    return True


_message = _decoder(str, field_name="message")


def _segment(value: str | UUID) -> str:
    """A path segment, escaped: a queue named ``a/b`` must not become two segments, nor one
    named ``.`` or ``..`` a step up the path (``/v1/jobs/./cancel`` is the bulk cancel)."""
    segment = quote(str(value), safe="")
    return segment.replace(".", "%2E") if segment in {".", ".."} else segment


def _instant(value: datetime) -> str:
    return value.isoformat()


# -- jobs -------------------------------------------------------------------------------------


def _job_body(
    job_type: str, payload: Mapping[str, Any], options: Mapping[str, Any]
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": job_type, "payload": dict(payload)}
    for name, value in options.items():
        if name == "depends_on":
            body[name] = [str(ref) for ref in value]
        elif name != "idempotency_key" and value is not None:
            body[name] = _instant(value) if isinstance(value, datetime) else value
    return body


def check_idempotency_key(key: str) -> str:
    """``key``, or ValueError if the API would refuse it, or no header could carry it."""
    if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH or not IDEMPOTENCY_KEY_PATTERN.fullmatch(key):
        raise ValueError(
            f"an idempotency key is 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII"
            " characters, with no space at either end"
        )
    return key


def _idempotency(options: Mapping[str, Any]) -> dict[str, str]:
    """The call's Idempotency-Key: the caller's, or a new UUID. Made once per call, so the
    client's retries of it all carry the same key."""
    key = options.get("idempotency_key") or str(uuid.uuid4())
    return {IDEMPOTENCY_HEADER: check_idempotency_key(key)}


def _enqueued(response: httpx.Response) -> Enqueued:
    job = _decoder(Job)(response)
    if response.headers.get("Idempotent-Replayed") == "true":
        outcome = Outcome.REPLAYED
    elif response.headers.get("X-Job-Duplicate") == "true":
        outcome = Outcome.DUPLICATE
    else:
        outcome = Outcome.CREATED
    return Enqueued(job=job, outcome=outcome)


def enqueue(job_type: str, payload: Mapping[str, Any], options: EnqueueOptions) -> Call[Enqueued]:
    return Call(
        "POST",
        "/v1/jobs",
        _enqueued,
        body=_job_body(job_type, payload, options),
        headers=_idempotency(options),
        idempotent=True,
    )


def enqueue_batch(jobs: Iterable[NewJob]) -> Call[BatchEnqueued]:
    items = []
    for job in jobs:
        item = msgspec.to_builtins(job)
        item.setdefault("idempotency_key", str(uuid.uuid4()))  # per item: see _idempotency
        items.append(item)
    return Call(
        "POST",
        "/v1/jobs/batch",
        _decoder(BatchEnqueued),
        body={"jobs": items},
        idempotent=True,
    )


def get_job(
    job_id: UUID | str, wait_s: float | None = None, deadline: float | None = None
) -> Call[Job]:
    params = []
    timeout_s = None
    if wait_s is not None:
        wait_s = min(max(wait_s, 0.001), MAX_WAIT_S)
        params.append(("wait", f"{wait_s:.3f}"))
        timeout_s = wait_s + WAIT_SLACK_S
    return Call(
        "GET",
        f"/v1/jobs/{_segment(job_id)}",
        _decoder(Job),
        params=params,
        idempotent=True,
        timeout_s=timeout_s,
        deadline=deadline,
    )


_NAME_FILTERS: Final = ("status", "type", "queue")
_TIME_FILTERS: Final = ("created_after", "created_before", "finished_after", "finished_before")


def _filter_fields(where: JobFilter) -> dict[str, list[str] | str]:
    """The filters given, as the API takes them: lists of names, and RFC 3339 instants."""
    given: Mapping[str, object] = where
    fields: dict[str, list[str] | str] = {}
    for name in _NAME_FILTERS:
        value = given.get(name)
        if isinstance(value, str):
            fields[name] = [value]
        elif isinstance(value, Iterable):
            fields[name] = [str(v) for v in value]
    for name in _TIME_FILTERS:
        value = given.get(name)
        if isinstance(value, datetime):
            fields[name] = _instant(value)
    return fields


def _filter_params(where: JobFilter) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []
    for name, value in _filter_fields(where).items():
        values = value if isinstance(value, list) else [value]
        params.extend((name, v) for v in values)  # a list repeats its name: ?status=a&status=b
    return params


def list_jobs(where: JobFilter, *, cursor: str | None, limit: int | None) -> Call[JobPage]:
    params = _filter_params(where)
    if cursor is not None:
        params.append(("cursor", cursor))
    if limit is not None:
        params.append(("limit", str(limit)))
    return Call("GET", "/v1/jobs", _decoder(JobPage), params=params, idempotent=True)


def delete_job(job_id: UUID | str) -> Call[None]:
    # Deleting twice answers 404 the second time, never deletes another job: safe to repeat.
    return Call("DELETE", f"/v1/jobs/{_segment(job_id)}", _no_content, idempotent=True)


def cancel_job(job_id: UUID | str) -> Call[JobStatusRecord]:
    return Call("POST", f"/v1/jobs/{_segment(job_id)}/cancel", _decoder(JobStatusRecord))


def retry_job(job_id: UUID | str) -> Call[JobStatusRecord]:
    return Call("POST", f"/v1/jobs/{_segment(job_id)}/retry", _decoder(JobStatusRecord))


def _bulk(action: str, where: JobFilter, limit: int, cursor: str | None) -> Call[BulkResult]:
    body: dict[str, Any] = {"limit": limit, **_filter_fields(where)}
    if cursor is not None:
        body["cursor"] = cursor
    # Never sent again once it may have reached the API: the API changes the jobs 500 a
    # transaction, so even its 503 may come after some were, and a repeat would change up to
    # ``limit`` more.
    return Call("POST", f"/v1/jobs/{action}", _decoder(BulkResult), body=body, retry_statuses=False)


def cancel_jobs(where: JobFilter, limit: int, cursor: str | None = None) -> Call[BulkResult]:
    """One request of a bulk cancel; the clients follow ``next_cursor`` (bulk_steps)."""
    return _bulk("cancel", where, limit, cursor)


def retry_jobs(where: JobFilter, limit: int, cursor: str | None = None) -> Call[BulkResult]:
    """One request of a bulk retry; the clients follow ``next_cursor`` (bulk_steps)."""
    return _bulk("retry", where, limit, cursor)


class Cursors:
    """The cursors one walk of pages was answered: one answered twice would send the walk
    round for ever (a buggy API, a proxy caching a page), so it is an error instead."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._seen: set[str] = set()

    def follow(self, cursor: str | None) -> str | None:
        """``cursor`` (None: the walk ended); UnexpectedResponseError when seen before."""
        if cursor is not None:
            if cursor in self._seen:
                raise UnexpectedResponseError(
                    f"{self._what} answered the cursor {cursor!r} again: a walk that never ends"
                )
            self._seen.add(cursor)
        return cursor


def bulk_steps(
    step: Callable[[JobFilter, int, str | None], Call[BulkResult]], where: JobFilter, limit: int
) -> Generator[Call[BulkResult], BulkResult, int]:
    """The requests of one bulk action, each sent by the client and its answer sent back in:
    the API reads at most so many jobs a request (200,000) and then answers a cursor to go on,
    which is followed until every matching job was walked or ``limit`` were changed. Returns
    how many were."""
    affected, cursor, cursors = 0, None, Cursors("a bulk action")
    while True:
        result = yield step(where, limit - affected, cursor)
        affected += result.affected
        if result.next_cursor is None or affected >= limit:
            return affected
        cursor = cursors.follow(result.next_cursor)


# -- the seed's endpoints ---------------------------------------------------------------------

_SEED_ID_PREFIX = "Message of id: "
_seed_id = _decoder(str, field_name="id")


def _seed_created(response: httpx.Response) -> UUID:
    text = _seed_id(response)
    try:
        return UUID(text.removeprefix(_SEED_ID_PREFIX))
    except ValueError:
        raise UnexpectedResponseError(f"POST /jobs answered id {text!r}") from None


def legacy_enqueue(
    job_type: str, payload: Mapping[str, Any], options: EnqueueOptions
) -> Call[UUID]:
    return Call(
        "POST",
        "/jobs",
        _seed_created,
        body=_job_body(job_type, payload, options),
        headers=_idempotency(options),
        idempotent=True,
    )


def legacy_status(job_id: UUID | str) -> Call[JobStatusRecord]:
    return Call(
        "GET",
        "/jobs/status",
        _decoder(JobStatusRecord),
        params=[("id", str(job_id))],
        idempotent=True,
    )


def health() -> Call[str]:
    return Call("GET", "/health", _message, idempotent=True)


def ready() -> Call[bool]:
    return Call("GET", "/ready", _ready, idempotent=True, retry_statuses=False)


# -- queues, workers, schedules ---------------------------------------------------------------


def list_queues() -> Call[list[QueueInfo]]:
    decode = _decoder(list[QueueInfo], field_name="queues")
    return Call("GET", "/v1/queues", decode, idempotent=True)


def set_queue_paused(name: str, *, paused: bool) -> Call[QueuePause]:
    action = "pause" if paused else "resume"
    path = f"/v1/queues/{_segment(name)}/{action}"
    return Call("POST", path, _decoder(QueuePause), idempotent=True)


def list_workers() -> Call[list[WorkerInfo]]:
    decode = _decoder(list[WorkerInfo], field_name="workers")
    return Call("GET", "/v1/workers", decode, idempotent=True)


def list_schedules() -> Call[list[Schedule]]:
    decode = _decoder(list[Schedule], field_name="schedules")
    return Call("GET", "/v1/schedules", decode, idempotent=True)


def set_schedule_paused(name: str, *, paused: bool) -> Call[Schedule]:
    action = "pause" if paused else "resume"
    path = f"/v1/schedules/{_segment(name)}/{action}"
    return Call("POST", path, _decoder(Schedule), idempotent=True)


# -- API keys ---------------------------------------------------------------------------------


def create_key(
    name: str,
    scopes: Iterable[str],
    queues: Iterable[str] | None,
    expires_in_days: int | None,
    limits: KeyLimits,
) -> Call[CreatedApiKey]:
    body: dict[str, Any] = {"name": name, "scopes": list(scopes), **limits}
    if queues is not None:
        body["queues"] = list(queues)
    if expires_in_days is not None:
        body["expires_in_days"] = expires_in_days
    # Not repeated when no answer came: a second try would meet its own key (409).
    return Call("POST", "/v1/keys", _decoder(CreatedApiKey), body=body)


def list_keys() -> Call[list[ApiKey]]:
    return Call("GET", "/v1/keys", _decoder(list[ApiKey], field_name="keys"), idempotent=True)


def revoke_key(name_or_prefix: str) -> Call[ApiKey]:
    path = f"/v1/keys/{_segment(name_or_prefix)}/revoke"
    return Call("POST", path, _decoder(ApiKey), idempotent=True)


def set_key_limits(name_or_prefix: str, limits: KeyLimits) -> Call[ApiKey]:
    path = f"/v1/keys/{_segment(name_or_prefix)}/limits"
    return Call("PUT", path, _decoder(ApiKey), body=dict(limits), idempotent=True)
