"""Request and response bodies. Field names and shapes follow the original Go service's contract."""

import hashlib
import json
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar.openapi.datastructures import ResponseSpec

from queue_core.db import UndecodableJson
from queue_core.jobs import EnqueueOutcome, Idempotency, JobRecord, NewJob
from queue_core.keyed import (
    IDEMPOTENCY_KEY_PATTERN,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_UNIQUE_FOR_S,
)
from queue_core.keys import (
    MAX_BURST,
    MAX_NAME_LENGTH,
    MAX_RATE,
    NAME_PATTERN,
    KeyInfo,
    RateLimit,
    RateLimits,
    Scope,
)
from queue_core.limits import (
    MAX_CONCURRENCY_KEY_LENGTH,
    MAX_CONCURRENCY_LIMIT,
    MAX_DEPENDENCIES,
    MAX_KEY_RATE_BURST,
    MAX_KEY_RATE_PER_S,
    MAX_TIMEOUT_S,
    MIN_RATE_PER_S,
    SCHEDULED_AT_MAX,
    SCHEDULED_AT_MIN,
)
from queue_core.schedules import TICK_KEY_PREFIX
from queue_core.states import DEFAULT_MAX_ATTEMPTS, DEFAULT_PRIORITY, DEFAULT_QUEUE


def _rfc3339(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


SCHEDULED_AT_RANGE = (
    f"from {_rfc3339(SCHEDULED_AT_MIN)} up to, not including, {_rfc3339(SCHEDULED_AT_MAX)}"
)


def _openapi(**schema: object) -> dict[str, object]:
    """OpenAPI keywords Litestar cannot derive from a field's msgspec constraints; it copies
    ``extra_json_schema["extra"]`` into the field's schema. It has no mapping for a dict's
    ``min_length`` (``minProperties``), and drops a bound of 0 (it tests each bound for truth)."""
    return {"extra": schema}


NonBlank = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=255, pattern=r"\S", description="A non-blank name"),
]


# A job another depends on: a job's id, or in a batch "$<index>" of an earlier item.
DependencyRef = Annotated[
    str,
    msgspec.Meta(
        pattern=(
            r"^(\$[0-9]{1,4}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}"
            r"-[0-9a-fA-F]{12})$"
        ),
        description='A job\'s id, or (in a batch) "$<index>" of an earlier job of the batch',
        examples=["$0", "01939d3e-2f4a-7c1e-9b2d-5e6f7a8b9c0d"],
    ),
]


# Python's "$" also matches before a final newline, so msgspec's patterns (which JSON Schema
# tools read as written) let "<valid>\n" through; the checks after decoding refuse it.
_TRAILING_NEWLINE = "must not end with a newline"


def _dependency(ref: str) -> UUID | int:
    return int(ref[1:]) if ref.startswith("$") else UUID(ref)


class ErrorDetail(msgspec.Struct, kw_only=True):
    """One field's problem in a 400, as Litestar reports it."""

    message: str
    key: str
    source: str


class JobCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /jobs`` body. ``type`` and ``payload`` are the seed's; the rest are optional."""

    type: Annotated[NonBlank, msgspec.Meta(description="Job type: the handler that runs it")]
    payload: Annotated[
        dict[str, Any],
        msgspec.Meta(
            min_length=1,
            description="A non-empty JSON object, passed to the handler",
            extra_json_schema=_openapi(minProperties=1),
        ),
    ]
    queue: Annotated[NonBlank, msgspec.Meta(description="Queue to put the job on")] = DEFAULT_QUEUE
    priority: Annotated[
        int, msgspec.Meta(ge=-32768, le=32767, description="Higher runs first within a queue")
    ] = DEFAULT_PRIORITY
    max_attempts: Annotated[
        int, msgspec.Meta(ge=1, le=1000, description="Runs before the job is failed for good")
    ] = DEFAULT_MAX_ATTEMPTS
    scheduled_at: Annotated[
        datetime | None,
        msgspec.Meta(
            description=(
                f"RFC 3339 instant (with offset) before which it must not run, {SCHEDULED_AT_RANGE}"
            )
        ),
    ] = None
    timeout_s: (
        Annotated[
            float,
            msgspec.Meta(
                gt=0,
                le=MAX_TIMEOUT_S,
                description="Seconds one attempt may run (default: the handler's)",
                extra_json_schema=_openapi(exclusiveMinimum=0),
            ),
        ]
        | None
    ) = None
    unique_key: (
        Annotated[
            NonBlank,
            msgspec.Meta(
                description=(
                    "At most one job with this key is pending or running (across all queues); "
                    "enqueueing another answers with that job instead (X-Job-Duplicate: true). "
                    "Keys starting with 'schedule:' are the schedules' own: 400"
                ),
                examples=["report:2026-12-04"],
            ),
        ]
        | None
    ) = None
    unique_for_s: (
        Annotated[
            float,
            msgspec.Meta(
                gt=0,
                le=MAX_UNIQUE_FOR_S,
                description=(
                    "With unique_key: the key is held for this many seconds from the enqueue, "
                    "whatever the job's status, instead of while it is pending or running"
                ),
                extra_json_schema=_openapi(exclusiveMinimum=0),
            ),
        ]
        | None
    ) = None
    concurrency_key: (
        Annotated[
            str,
            msgspec.Meta(
                min_length=1,
                max_length=MAX_CONCURRENCY_KEY_LENGTH,
                pattern=r"\S",
                description=(
                    "Groups jobs (across queues) under the limits below, held across every "
                    "worker; the latest enqueue's limits apply to the key"
                ),
                examples=["customer:42"],
            ),
        ]
        | None
    ) = None
    concurrency_limit: (
        Annotated[
            int,
            msgspec.Meta(
                ge=1,
                le=MAX_CONCURRENCY_LIMIT,
                description=(
                    "With concurrency_key: at most this many of the key's jobs run at once "
                    "(left out: the key keeps its limit, if any)"
                ),
            ),
        ]
        | None
    ) = None
    rate_limit: (
        Annotated[
            float,
            msgspec.Meta(
                ge=MIN_RATE_PER_S,
                le=MAX_KEY_RATE_PER_S,
                description=(
                    "With concurrency_key: at most this many of the key's jobs start a second, "
                    "at least one a day (left out: the key keeps its rate, if any)"
                ),
            ),
        ]
        | None
    ) = None
    rate_burst: (
        Annotated[
            int,
            msgspec.Meta(
                ge=1,
                le=MAX_KEY_RATE_BURST,
                description="With rate_limit: starts allowed at once (default: 1 s worth)",
            ),
        ]
        | None
    ) = None
    depends_on: (
        Annotated[
            list[DependencyRef],
            msgspec.Meta(
                max_length=MAX_DEPENDENCIES,
                description=(
                    "Jobs this one waits for: it runs once all completed, and fails (or is "
                    "cancelled) if one fails for good (or is cancelled). Unknown ids: 400"
                ),
            ),
        ]
        | None
    ) = None

    def problems(self, at: str = "", index: int | None = None) -> list[ErrorDetail]:
        """What msgspec's constraints cannot express, each naming its field (prefixed by ``at``
        in a batch, where ``index`` is the item's). Checked here rather than in
        ``__post_init__``, whose errors msgspec attributes to the whole object instead of the
        field."""
        found = self._limit_problems(at, index)
        if self.unique_for_s is not None and self.unique_key is None:
            message = "needs a unique_key: it says how long that key is held"
            found.append(ErrorDetail(message=message, key=f"{at}unique_for_s", source="body"))
        if self.unique_key is not None and self.unique_key.startswith(TICK_KEY_PREFIX):
            message = f"must not start with {TICK_KEY_PREFIX!r}: those are the schedules' keys"
            found.append(ErrorDetail(message=message, key=f"{at}unique_key", source="body"))
        scheduled_at = self.scheduled_at
        if scheduled_at is None:
            return found
        if scheduled_at.tzinfo is None:
            message = "must include a timezone offset, e.g. 'Z' or '+02:00'"
        elif not SCHEDULED_AT_MIN <= scheduled_at < SCHEDULED_AT_MAX:
            message = f"must be {SCHEDULED_AT_RANGE}"
        else:
            return found
        return [*found, ErrorDetail(message=message, key=f"{at}scheduled_at", source="body")]

    def _limit_problems(self, at: str, index: int | None) -> list[ErrorDetail]:
        found = []
        for name in ("concurrency_limit", "rate_limit"):
            if getattr(self, name) is not None and self.concurrency_key is None:
                message = "needs a concurrency_key: the limit is the key's"
                found.append(ErrorDetail(message=message, key=f"{at}{name}", source="body"))
        if self.rate_burst is not None and self.rate_limit is None:
            message = "needs a rate_limit"
            found.append(ErrorDetail(message=message, key=f"{at}rate_burst", source="body"))
        for ref in self.depends_on or ():
            if ref.endswith("\n"):  # let through by the pattern: see _TRAILING_NEWLINE
                message = _TRAILING_NEWLINE
            elif not ref.startswith("$"):
                continue
            elif index is None:
                message = f'"{ref}": "$<index>" names an earlier job of a batch, and this is none'
            elif int(ref[1:]) >= index:
                message = f'"{ref}": "$<index>" must name an earlier job of the batch'
            else:
                continue
            found.append(ErrorDetail(message=message, key=f"{at}depends_on", source="body"))
        return found

    def to_new_job(self, idempotency: Idempotency | None = None) -> NewJob:
        return NewJob(
            type=self.type,
            payload=self.payload,
            queue=self.queue,
            priority=self.priority,
            max_attempts=self.max_attempts,
            scheduled_at=self.scheduled_at,
            timeout_s=self.timeout_s,
            unique_key=self.unique_key,
            unique_for_s=self.unique_for_s,
            idempotency=idempotency,
            concurrency_key=self.concurrency_key,
            concurrency_limit=self.concurrency_limit,
            rate_limit=self.rate_limit,
            rate_burst=self.rate_burst,
            depends_on=tuple(_dependency(ref) for ref in self.depends_on or ()),
        )

    def dependency_ids(self) -> list[UUID]:
        """The ids of the existing jobs this one depends on (not the "$n" of a batch)."""
        return [UUID(ref) for ref in self.depends_on or () if not ref.startswith("$")]

    def fingerprint(self) -> bytes:
        """SHA-256 of the job as requested, in a canonical form: every field of a job (the
        defaults filled in, so leaving a field out or sending its default is one request), as
        JSON with sorted keys, ``scheduled_at`` in UTC. Compared when an idempotency key comes
        again."""
        fields = {name: getattr(self, name) for name in JobCreate.__struct_fields__}
        if self.scheduled_at is not None:
            fields["scheduled_at"] = self.scheduled_at.astimezone(UTC).isoformat()
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).digest()


MAX_BATCH_JOBS = 1000

IdempotencyKey = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY_LENGTH,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description=(
            "1 to 255 printable ASCII characters; the same key with the same job within "
            "API_IDEMPOTENCY_TTL_S gives the same job (its outcome says replayed)"
        ),
        examples=["order-4711-shipping"],
    ),
]


class JobBatchItem(JobCreate, kw_only=True, forbid_unknown_fields=True):
    """One job of a batch: ``POST /jobs``'s fields, and the item's own idempotency key."""

    idempotency_key: IdempotencyKey | None = None

    def problems(self, at: str = "", index: int | None = None) -> list[ErrorDetail]:
        found = super().problems(at, index)
        if self.idempotency_key is not None and self.idempotency_key.endswith("\n"):
            key = f"{at}idempotency_key"
            found.append(ErrorDetail(message=_TRAILING_NEWLINE, key=key, source="body"))
        return found


class JobBatchCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/jobs/batch`` body: up to 1,000 jobs, stored all together or not at all."""

    jobs: Annotated[list[JobBatchItem], msgspec.Meta(min_length=1, max_length=MAX_BATCH_JOBS)]

    def problems(self) -> list[ErrorDetail]:
        return [
            problem
            for index, job in enumerate(self.jobs)
            for problem in job.problems(f"jobs[{index}].", index)
        ]


class JobBatchCreated(msgspec.Struct, kw_only=True):
    ids: Annotated[list[UUID], msgspec.Meta(description="The jobs' ids, in request order")]
    outcomes: Annotated[
        list[EnqueueOutcome],
        msgspec.Meta(
            description=(
                "Per job, in request order: created (a new job), replayed (the job this item's "
                "idempotency_key made before) or duplicate (the job holding its unique_key)"
            )
        ),
    ]


class JobCreated(msgspec.Struct, kw_only=True):
    message: str = "Message successfully received"
    id: Annotated[
        str, msgspec.Meta(examples=["Message of id: a1b2c3d4-e5f6-7890-1234-567890abcdef"])
    ]

    @classmethod
    def for_job(cls, job_id: UUID) -> "JobCreated":
        return cls(id=f"Message of id: {job_id}")


class JobStatusResponse(msgspec.Struct, kw_only=True, rename="pascal"):
    """``GET /jobs/status`` body: the seed's PascalCase object."""

    id: UUID = msgspec.field(name="ID")
    type: str
    payload: Annotated[
        dict[str, Any] | None,
        msgspec.Meta(
            description=(
                "null only when the stored payload is nested too deeply to be read, which "
                "no job enqueued through this API can be"
            )
        ),
    ]
    status: str
    attempts: int
    max_attempts: int
    error_message: str | None
    scheduled_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, job: JobRecord) -> "JobStatusResponse":
        return cls(
            id=job.id,
            type=job.type,
            payload=None if isinstance(job.payload, UndecodableJson) else job.payload,
            status=job.status.value,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            error_message=job.error_message,
            scheduled_at=job.scheduled_at,
            created_at=job.created_at,
            updated_at=job.updated_at,
        )


class Message(msgspec.Struct, kw_only=True):
    message: str


class ErrorBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every error answer: Litestar's shape. ``extra`` names the fields of a 400."""

    status_code: int
    detail: str
    extra: list[ErrorDetail] | None = None


_ERROR_MEANINGS = {
    400: "Invalid input: `detail` and `extra` say what is wrong",
    401: (
        "No API key, or an unknown, revoked or expired one (`Authorization: Bearer <key>`); "
        "WWW-Authenticate says which"
    ),
    403: "The API key lacks the scope this operation needs, or may not use this queue",
    404: "No job has this id",
    408: "The body did not arrive within API_BODY_TIMEOUT_S; the connection is closed",
    409: "The job's status does not allow this",
    413: "The body is larger than API_MAX_BODY_BYTES",
    415: "The body is not JSON (Content-Type)",
    422: ("API_REJECT_UNKNOWN_TYPES is on and no live worker serves this job type on this queue"),
    429: (
        "Past the API key's rate limit (requests or jobs a second); retry after Retry-After seconds"
    ),
    503: "PostgreSQL is unreachable; retry after Retry-After seconds",
}


def error_responses(
    *statuses: int, meanings: dict[int, str] | None = None
) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the error statuses a route can answer; ``meanings`` overrides the
    usual description of a status. A route that takes a key (401) can also answer 429: the
    key's rate limit."""
    described = {**_ERROR_MEANINGS, **(meanings or {})}
    if 401 in statuses and 429 not in statuses:
        statuses = (*statuses, 429)
    return {
        status: ResponseSpec(
            data_container=ErrorBody, description=described[status], generate_examples=False
        )
        for status in statuses
    }


# -- API keys (/v1/keys) --------------------------------------------------------------------

KeyName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        pattern=NAME_PATTERN,
        description="Unique name: letters, digits and ._:@-, not starting with tq_",
    ),
]
MAX_EXPIRES_IN_DAYS = 3650


PerSecond = Annotated[
    float,
    msgspec.Meta(
        ge=MIN_RATE_PER_S,
        le=MAX_RATE,
        description="Tokens a second, shared by all replicas, at least one a day",
    ),
]
Burst = Annotated[
    int,
    msgspec.Meta(ge=1, le=MAX_BURST, description="At most this many at once (default: 1 s worth)"),
]


class KeyLimits(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A key's rate limits; a field left out is no limit (``PUT /v1/keys/{key}/limits``)."""

    requests_per_s: PerSecond | None = None
    requests_burst: Burst | None = None
    jobs_per_s: PerSecond | None = None
    jobs_burst: Burst | None = None

    def problems(self) -> list[ErrorDetail]:
        """None found after decoding (strict_json_body asks): to_limits() and the key store
        check the rest, with a 400 that says what is wrong."""
        return []

    def to_limits(self) -> RateLimits:
        """The limits; a burst without its rate raises InvalidKeySpecError (a 400)."""
        return RateLimits(
            requests=RateLimit.of(self.requests_per_s, self.requests_burst),
            jobs=RateLimit.of(self.jobs_per_s, self.jobs_burst),
        )

    @classmethod
    def of(cls, limits: RateLimits) -> "KeyLimits":
        r, j = limits.requests, limits.jobs
        return cls(
            requests_per_s=None if r is None else r.per_s,
            requests_burst=None if r is None else r.burst,
            jobs_per_s=None if j is None else j.per_s,
            jobs_burst=None if j is None else j.burst,
        )


class KeyCreate(KeyLimits, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/keys`` body."""

    name: KeyName
    scopes: Annotated[list[Scope], msgspec.Meta(min_length=1, description="What the key may do")]
    queues: (
        Annotated[
            list[NonBlank],
            msgspec.Meta(min_length=1, description="The only queues it may use (default: all)"),
        ]
        | None
    ) = None
    expires_in_days: (
        Annotated[
            int,
            msgspec.Meta(
                ge=1, le=MAX_EXPIRES_IN_DAYS, description="Expires this many days from now"
            ),
        ]
        | None
    ) = None


class KeyView(msgspec.Struct, kw_only=True):
    """A key as listed: never its secret nor its hash."""

    name: str
    prefix: str
    scopes: list[Scope]
    queues: list[str] | None
    expires_at: datetime | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    requests_per_s: float | None
    requests_burst: int | None
    jobs_per_s: float | None
    jobs_burst: int | None

    @classmethod
    def of(cls, key: KeyInfo) -> "KeyView":
        limits = KeyLimits.of(key.limits)
        return cls(
            name=key.name,
            prefix=key.prefix,
            scopes=sorted(key.scopes),
            queues=None if key.queues is None else sorted(key.queues),
            expires_at=key.expires_at,
            created_at=key.created_at,
            last_used_at=key.last_used_at,
            revoked_at=key.revoked_at,
            requests_per_s=limits.requests_per_s,
            requests_burst=limits.requests_burst,
            jobs_per_s=limits.jobs_per_s,
            jobs_burst=limits.jobs_burst,
        )


class KeyCreated(KeyView, kw_only=True):
    """The new key, with its secret: shown this once, stored nowhere."""

    key: Annotated[str, msgspec.Meta(description="The secret: send it as Authorization: Bearer")]


class KeyList(msgspec.Struct, kw_only=True):
    keys: list[KeyView]
