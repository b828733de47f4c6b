"""The check every JSON body goes through before its handler runs: anything the handler must
not see gets a 400 or 415 in Litestar's error shape (reading the body may also end in a 413,
over API_MAX_BODY_BYTES, or a 408, see body_timeout.py)."""

from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec
from litestar import Request
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_415_UNSUPPORTED_MEDIA_TYPE
from litestar.types import Scope
from litestar.utils.scope.state import ScopeState

from queue_api.job_views import JobBulkAction
from queue_api.json_limits import MAX_JSON_DEPTH, JsonPath, nested_too_deeply, unstorable_text_at
from queue_api.raw_headers import raw_header
from queue_api.schemas import ErrorDetail, JobBatchCreate, JobCreate, KeyCreate, KeyLimits

JsonBody = JobCreate | JobBatchCreate | JobBulkAction | KeyCreate | KeyLimits
B = TypeVar("B", bound=JsonBody)

# The member names a 400 may quote back: ours. A client's own names (a payload's keys) are not
# echoed, so an error never carries a client's data or characters that cannot be encoded.
_FIELD_NAMES = (
    frozenset(JobCreate.__struct_fields__)
    | frozenset(JobBatchCreate.__struct_fields__)
    | frozenset(JobBulkAction.__struct_fields__)
    | frozenset(KeyCreate.__struct_fields__)
)

UNSTORABLE_TEXT = (
    "text must not contain NUL characters (\\u0000) or unpaired surrogates "
    "(\\ud800 to \\udfff), which the database cannot store"
)


def strict_json_body(body_type: type[JsonBody]) -> Callable[[Request], Awaitable[None]]:  # type: ignore[type-arg]
    """A before_request hook that decodes the body as ``body_type`` strictly, refusing what
    Litestar's lenient conversion would let through (a non-JSON content type, an empty body,
    invalid UTF-8, "5" for an integer), and what would fail later: nesting deeper than
    :data:`MAX_JSON_DEPTH`, text PostgreSQL cannot store, and the checks of ``problems()``."""
    decoder = msgspec.json.Decoder(body_type, strict=True)

    async def check(request: Request) -> None:  # type: ignore[type-arg]
        check_media_type(request.scope)
        decoded = decode_strictly(
            await request.body(), decoder, f"{request.method} {request.url.path}"
        )
        # Decoded once: Litestar takes ``data`` from the request's cached JSON, and its
        # conversion to the handler's type passes this value, already of that type, as it is.
        # Else it decoded the body again, into dicts first (a batch of 1,000 jobs: 1.9 ms,
        # twice what the strict decoding costs).
        ScopeState.from_scope(request.scope).json = decoded

    return check


def check_media_type(scope: Scope) -> None:
    """415 unless the Content-Type is JSON (``application/json`` or ``…+json``). Read from the
    raw headers: Litestar's parsed ``content_type`` (a header object, an options dict) cost more
    than the rest of this check on a small body."""
    content_type = raw_header(scope, b"content-type") or ""
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise HTTPException(
            status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail=f"Content-Type must be application/json, got {media_type or 'none'!r}",
        )


def decode_strictly(body: bytes, decoder: msgspec.json.Decoder[B], where: str) -> B:
    """``body`` decoded by ``decoder`` (a strict one), or the 400 that says what is wrong with
    it; ``where`` ("POST /jobs") names the request in a validation failure's detail."""
    if not body.strip():
        raise HTTPException(status_code=400, detail="Request body is empty: expected a JSON object")
    if nested_too_deeply(body):
        raise HTTPException(
            status_code=HTTP_400_BAD_REQUEST,
            detail=f"JSON is nested too deeply: at most {MAX_JSON_DEPTH} levels of arrays and "
            "objects are accepted",
        )
    if (path := unstorable_text_at(body)) is not None:
        raise invalid(where, [ErrorDetail(message=UNSTORABLE_TEXT, key=_key(path), source="body")])
    try:
        decoded = decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise invalid(where, [_from_msgspec(str(exc))]) from None
    except msgspec.DecodeError as exc:
        # msgspec's message sometimes starts with these words, and sometimes not
        problem = str(exc).removeprefix("JSON is malformed: ")
        raise HTTPException(status_code=400, detail=f"JSON is malformed: {problem}") from None
    except UnicodeDecodeError:
        raise HTTPException(status_code=400, detail="Request body is not valid UTF-8") from None
    if problems := decoded.problems():
        raise invalid(where, problems)
    return decoded


def invalid(where: str, problems: list[ErrorDetail]) -> ValidationException:
    """A 400 in Litestar's own shape, each problem naming its field."""
    return ValidationException(
        detail=f"Validation failed for {where}",
        extra=[msgspec.structs.asdict(problem) for problem in problems],
    )


def _from_msgspec(message: str) -> ErrorDetail:
    """msgspec's "Expected `int` - at `$.jobs[0].priority`" as a field's problem."""
    text, _, path = message.partition(" - at `$.")
    return ErrorDetail(message=text, key=path.rstrip("`") or "data", source="body")


def _key(path: JsonPath) -> str:
    """``path`` the way msgspec names a field (``jobs[3].payload``), cut before the first member
    name that is not one of ours."""
    key = ""
    for step in path:
        if isinstance(step, int):
            key += f"[{step}]"
        elif step in _FIELD_NAMES:
            key += f".{step}" if key else step
        else:
            break
    return key or "data"
