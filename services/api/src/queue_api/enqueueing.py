"""What every enqueue route shares: the checks before a job is stored, the ``Idempotency-Key``
header (IETF draft "The Idempotency-Key HTTP Header Field") and the answers that say a job was
not new.

- An idempotency key is namespaced by its caller, the API key's name (``key:<name>/<key>``,
  or ``*/<key>`` with API_AUTH=off): two clients' keys never meet. It holds for
  ``API_IDEMPOTENCY_TTL_S`` from the first request, with the request's fingerprint
  (``JobCreate.fingerprint``): the same key and job again answers with the first job (200,
  ``Idempotent-Replayed: true``); the same key with another job is a 422.
- A ``unique_key`` held by another job answers with that job (200, ``X-Job-Duplicate: true``).
  Unique keys are global, so the holder may be another client's job: every enqueue route
  answers with its id (an id grants nothing: reading the job takes ``jobs:read`` and its
  queue), but ``POST /v1/jobs`` shows the holder whole only to a key that may read it, and
  answers any other with 409 and the id (:func:`check_holder_readable`).

Keys are decided by the database (``queue_core.keyed``), so this holds across replicas.
"""

from collections.abc import Iterable
from typing import Annotated, Final

from litestar.datastructures import ResponseHeader
from litestar.exceptions import ClientException
from litestar.params import HeaderParameter
from litestar.status_codes import HTTP_409_CONFLICT

from queue_api.auth import Caller
from queue_api.context import RequestContext
from queue_api.metrics import count_enqueued
from queue_api.schemas import JobCreate
from queue_core.errors import UnknownDependencyError
from queue_core.jobs import Enqueued, EnqueueOutcome, Idempotency, JobRecord
from queue_core.keyed import IDEMPOTENCY_KEY_PATTERN, MAX_IDEMPOTENCY_KEY_LENGTH, is_keyed
from queue_core.keys import Scope

IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
REPLAYED_HEADER: Final = "Idempotent-Replayed"
DUPLICATE_HEADER: Final = "X-Job-Duplicate"
ANONYMOUS_NAMESPACE: Final = "*"  # API_AUTH=off; never a key's name (keys.NAME_PATTERN)

# The 422 of the enqueue routes: both reasons they may have.
UNPROCESSABLE: Final = {
    422: (
        "The idempotency key was used before with a different job; or API_REJECT_UNKNOWN_TYPES "
        "is on and no live worker serves this job type on this queue"
    )
}

IdempotencyKeyHeader = Annotated[
    str | None,
    HeaderParameter(
        name=IDEMPOTENCY_HEADER,
        required=False,
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY_LENGTH,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description=(
            "Makes retrying safe: the same key with the same job within API_IDEMPOTENCY_TTL_S "
            "(24 h by default) answers with the job the first request made (200, "
            "Idempotent-Replayed: true) instead of making another; with a different job, 422. "
            "1 to 255 printable ASCII characters, e.g. a UUID; scoped to the API key."
        ),
    ),
]

OUTCOME_HEADERS: Final = [
    ResponseHeader(
        name=REPLAYED_HEADER,
        description="true: the job an earlier request with this Idempotency-Key made (200)",
        documentation_only=True,
        required=False,
    ),
    ResponseHeader(
        name=DUPLICATE_HEADER,
        description="true: the job already holding this unique_key; nothing was enqueued (200)",
        documentation_only=True,
        required=False,
    ),
]


def namespaced(caller: Caller, key: str) -> str:
    """``key`` as stored: in its caller's namespace."""
    namespace = ANONYMOUS_NAMESPACE if caller.key is None else f"key:{caller.key.name}"
    return f"{namespace}/{key}"


def idempotency(
    caller: Caller, key: str | None, data: JobCreate, ttl_s: float
) -> Idempotency | None:
    if key is None:
        return None
    return Idempotency(key=namespaced(caller, key), fingerprint=data.fingerprint(), ttl_s=ttl_s)


def outcome_headers(outcome: EnqueueOutcome) -> dict[str, str]:
    if outcome is EnqueueOutcome.REPLAYED:
        return {REPLAYED_HEADER: "true"}
    if outcome is EnqueueOutcome.DUPLICATE:
        return {DUPLICATE_HEADER: "true"}
    return {}


async def enqueue_one(
    ctx: RequestContext, data: JobCreate, idempotency_key: str | None, *, read_back: bool
) -> tuple[Enqueued, JobRecord | None]:
    """Check, then store one job, with its keys; the job as stored too if ``read_back``, which
    for a duplicate the caller may not read is a 409 instead (module docstring)."""
    caller, services = ctx.caller, ctx.services
    caller.check_queues([data.queue])
    await check_dependencies_usable(ctx, [data])
    await services.worker_directory.check([(data.type, data.queue)])
    await services.rate_limiter.admit_jobs(caller.key, 1)
    job = data.to_new_job(idempotency(caller, idempotency_key, data, services.idempotency_ttl_s))
    job_queue = services.queue
    if is_keyed(job):
        enqueued = await job_queue.enqueue_keyed(job)
    else:
        enqueued = Enqueued(await job_queue.enqueue(job), EnqueueOutcome.CREATED)
    if enqueued.outcome is EnqueueOutcome.CREATED:
        count_enqueued([data])
    if not read_back:
        return enqueued, None
    record = await job_queue.get(enqueued.id)
    if enqueued.outcome is EnqueueOutcome.DUPLICATE:
        check_holder_readable(caller, record)
    return enqueued, record


async def check_dependencies_usable(ctx: RequestContext, jobs: Iterable[JobCreate]) -> None:
    """For a key restricted to some queues, the jobs these jobs depend on in other queues are
    as jobs that do not exist (the enqueue's 400): a dependency's status shows in the
    dependant (GET /v1/jobs/{id}), so depending on another tenant's job would be a way to
    watch it, and a 403 would tell that it exists. (An item of the same batch, "$n", is
    checked as an item.)"""
    caller = ctx.caller
    if caller.queues is None:
        return
    ids = {ref for job in jobs for ref in job.dependency_ids()}
    if ids:
        found = await ctx.services.queue.queues_of(ids)
        hidden = sorted(i for i in ids if i not in found or not caller.allows_queue(found[i]))
        if hidden:
            raise UnknownDependencyError(hidden)


def check_holder_readable(caller: Caller, holder: JobRecord) -> None:
    """409 naming the holder's id, unless ``caller`` may read the job holding the unique key
    (``jobs:read`` and its queue): its payload and result may be another client's."""
    if Scope.JOBS_READ in caller.scopes and caller.allows_queue(holder.queue):
        return
    raise ClientException(
        status_code=HTTP_409_CONFLICT,
        detail=(
            f"unique_key is held by job {holder.id}; nothing was enqueued. This API key may "
            "not read that job (it takes the jobs:read scope and the job's queue)"
        ),
        headers={DUPLICATE_HEADER: "true"},
    )
