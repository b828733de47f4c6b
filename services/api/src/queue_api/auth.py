"""Who is calling, and may they: the API key on every route but the probes and the OpenAPI pages.

Each route names the scopes it needs with :func:`requires` (its ``opt`` for the check, and its
OpenAPI ``security``, so the document and Swagger UI's Authorize agree with what is enforced).
One app-wide check, :class:`Authorizer`, reads them: a route that declares neither scopes nor
:data:`PUBLIC` is refused to everyone (fail closed: a new route cannot be open by mistake).
The web console's routes (``/ui``) declare their scopes with :func:`requires_session`: the
caller then comes from a signed session cookie (``queue_api.ui.sessions``), never from an
``Authorization`` header, and the same scope check applies. A route declaring
:func:`requires` never accepts a session: the JSON API takes keys only, so a cookie cannot act
on it (no CSRF there).

- No key, or not a Bearer one: 401 with ``WWW-Authenticate: Bearer realm="task-queue"``.
- A malformed, unknown, revoked or expired key: 401, ``error="invalid_token"`` (RFC 6750).
- A key without a scope the route needs: 403 naming the scope (``error="insufficient_scope"``).
- A key restricted to other queues: 403, from the handler (:meth:`Caller.check_queue`).

Checked keys are cached per process for ``API_AUTH_CACHE_S`` (default 5 s), so a request costs
no query: a revocation or a changed scope reaches every replica within that time. A key's
expiry is checked on every request against the clock, never cached. If the database cannot be
reached when a cached entry is due for a check, the last verdict stands until it can be (the
routes that need the database answer 503 anyway, and ``/metrics`` must keep saying that the
database is down). ``last_used_at`` is written behind, at most once a minute per key and
replica, in one statement for all keys, never on a request's path.
"""

import asyncio
import contextlib
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from litestar.connection import ASGIConnection, Request
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.middleware._internal.exceptions.middleware import ExceptionHandlerMiddleware
from litestar.types import ASGIApp, Receive, Send
from litestar.types import Scope as AsgiScope

from queue_api.rate_limit import RateLimiter
from queue_api.raw_headers import raw_header
from queue_core.errors import TransientDatabaseError
from queue_core.keys import ALL_SCOPES, KeyInfo, KeyStore, Scope, StoredKey, prefix_of
from queue_core.log import get_logger

log = get_logger("queue_api.auth")

SCOPES_OPT: Final = "scopes"
PUBLIC_OPT: Final = "public"
SESSION_OPT: Final = "session"  # a web console route: the caller comes from its session
CALLER_STATE: Final = "caller"
BEARER_SCHEME: Final = "BearerKey"  # the OpenAPI security scheme's name
REALM: Final = 'Bearer realm="task-queue"'
DEFAULT_CACHE_S: Final = 5.0
LAST_USED_RESOLUTION_S: Final = 60.0  # last_used_at is exact to about a minute
LAST_USED_FLUSH_S: Final = 10.0

_OPTIONS: Final = frozenset({"OPTIONS"})

# For a route decorator: open to anyone (the probes).
PUBLIC: Final[dict[str, Any]] = {PUBLIC_OPT: True}


def requires(*scopes: Scope) -> dict[str, Any]:
    """A route decorator's ``opt`` and ``security`` for ``scopes``:
    ``@post("/", **requires(Scope.JOBS_WRITE))``."""
    return {
        "opt": {SCOPES_OPT: frozenset(scopes)},
        "security": [{BEARER_SCHEME: sorted(scopes)}],
    }


def requires_session(*scopes: Scope) -> dict[str, Any]:
    """A web console route's ``opt``: signed in by a session (any key when ``scopes`` is
    empty), the key holding ``scopes``. Out of the OpenAPI document."""
    return {
        "opt": {SCOPES_OPT: frozenset(scopes), SESSION_OPT: True},
        "include_in_schema": False,
    }


def session_fingerprint(stored: StoredKey) -> str:
    """What a console session keeps of the key it was signed in with: a digest of the key's
    stored hash, so that a session names exactly one key (not just its prefix) and reveals
    nothing that could stand in for the key."""
    return hashlib.sha256(b"queue-ui-session:" + stored.key_hash).hexdigest()[:32]


@dataclass(frozen=True)
class Caller:
    """The key a request came with; ``key`` is None when API_AUTH=off (anyone may do anything)."""

    key: KeyInfo | None

    @property
    def scopes(self) -> frozenset[Scope]:
        return frozenset(ALL_SCOPES) if self.key is None else self.key.scopes

    @property
    def queues(self) -> frozenset[str] | None:
        return None if self.key is None else self.key.queues

    def allows_queue(self, queue: str) -> bool:
        return self.key is None or self.key.allows_queue(queue)

    def check_queues(self, queues: Iterable[str], *, what: str | None = None) -> None:
        """403 unless the key may use every queue in ``queues``. ``what`` replaces the queue's
        name in the message when the client did not name the queue itself (a job's queue)."""
        refused = sorted({q for q in queues if not self.allows_queue(q)})
        if refused:
            named = what or ("the queue " + ", ".join(repr(q) for q in refused))
            raise PermissionDeniedException(detail=f"this API key may not use {named}")


ANYONE: Final = Caller(None)


def _unauthorized(detail: str, *, token_sent: bool) -> NotAuthorizedException:
    challenge = REALM
    if token_sent:
        challenge += f', error="invalid_token", error_description="{detail}"'
    return NotAuthorizedException(detail=detail, headers={"WWW-Authenticate": challenge})


@dataclass
class _Checked:
    stored: StoredKey
    checked_at: float  # time.monotonic()


class KeyChecker:
    """Turns an ``Authorization`` header into a :class:`Caller`, with the cache described in
    the module's docstring. One per app; :meth:`attach` gives it the database at start-up."""

    def __init__(self, *, cache_s: float = DEFAULT_CACHE_S) -> None:
        self._cache_s = cache_s
        self._store: KeyStore | None = None
        self._checked: dict[str, _Checked] = {}  # by prefix: only keys that exist
        self._used: dict[str, datetime] = {}  # prefix → last use, waiting for the next flush
        self._marked_at: dict[str, float] = {}  # prefix → monotonic time last queued for flush
        self._lookups: dict[str, asyncio.Future[StoredKey | None]] = {}  # by prefix, in flight

    def attach(self, store: KeyStore) -> None:
        self._store = store

    async def caller(self, authorization: str | None) -> Caller:
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized(
                "an API key is required: send Authorization: Bearer <key>", token_sent=False
            )
        token = token.strip()
        prefix = prefix_of(token)
        if prefix is None:
            raise _unauthorized("unknown API key", token_sent=True)
        stored = await self._stored(prefix)
        if stored is None or not stored.matches(token):
            raise _unauthorized("unknown API key", token_sent=True)
        return self._admitted(prefix, stored)

    async def signed_in(self, key: str) -> tuple[Caller, str]:
        """The web console's sign-in: the key checked as a Bearer one would be, and its
        :func:`session_fingerprint` for the session."""
        caller = await self.caller(f"Bearer {key}")
        prefix = prefix_of(key.strip())
        stored = None if prefix is None else await self._stored(prefix)
        if stored is None:  # pragma: no cover - caller() has just found it
            raise _unauthorized("unknown API key", token_sent=True)
        return caller, session_fingerprint(stored)

    async def session_caller(self, prefix: str, fingerprint: str) -> Caller:
        """The key a console session was signed in with, checked again as on every request
        (revoked, expired, scopes changed: with the same cache as Bearer keys)."""
        stored = await self._stored(prefix)
        if stored is None or not hmac.compare_digest(
            session_fingerprint(stored).encode(), fingerprint.encode()
        ):
            raise _unauthorized("the key this session was signed in with is gone", token_sent=True)
        return self._admitted(prefix, stored)

    def _admitted(self, prefix: str, stored: StoredKey) -> Caller:
        key = stored.info
        now = datetime.now(UTC)
        if key.revoked_at is not None:
            raise _unauthorized("API key revoked", token_sent=True)
        if key.expires_at is not None and now >= key.expires_at:
            raise _unauthorized("API key expired", token_sent=True)
        self._note_use(prefix, now)
        return Caller(key)

    async def _stored(self, prefix: str) -> StoredKey | None:
        checked = self._checked.get(prefix)
        if checked is not None and time.monotonic() - checked.checked_at < self._cache_s:
            return checked.stored
        # One lookup per key at a time: when a cached entry falls due under load, the requests
        # arriving meanwhile wait for that lookup instead of each sending the same query.
        lookup = self._lookups.get(prefix)
        if lookup is None:
            lookup = self._lookups[prefix] = asyncio.ensure_future(self._look_up(prefix))
            lookup.add_done_callback(lambda done: self._looked_up(prefix, done))
        return await asyncio.shield(lookup)  # a request that gives up leaves it to the others

    def _looked_up(self, prefix: str, done: "asyncio.Future[StoredKey | None]") -> None:
        self._lookups.pop(prefix, None)
        if not done.cancelled():
            done.exception()  # retrieved: every waiter may have given up before it ended

    async def _look_up(self, prefix: str) -> StoredKey | None:
        if self._store is None:  # pragma: no cover - the lifespan attaches it before requests
            raise RuntimeError("KeyChecker used before attach()")
        checked = self._checked.get(prefix)
        now = time.monotonic()
        try:
            stored = await self._store.find(prefix)
        except TransientDatabaseError:
            if checked is None:
                raise
            checked.checked_at = now  # the last verdict stands; try again in cache_s
            return checked.stored
        if stored is None:
            self._checked.pop(prefix, None)
            return None
        self._checked[prefix] = _Checked(stored, now)
        return stored

    def _note_use(self, prefix: str, now: datetime) -> None:
        tick = time.monotonic()
        marked = self._marked_at.get(prefix)
        if marked is None or tick - marked >= LAST_USED_RESOLUTION_S:
            self._marked_at[prefix] = tick
            self._used[prefix] = now

    async def flush_last_used(self) -> None:
        """Write the pending ``last_used_at`` values; on a transient error keep them for the
        next flush."""
        if not self._used or self._store is None:
            return
        pending, self._used = self._used, {}
        try:
            await self._store.mark_used(list(pending.items()))
        except TransientDatabaseError:
            for prefix, at in pending.items():
                self._used.setdefault(prefix, at)
            raise

    async def run_flusher(self, interval_s: float = LAST_USED_FLUSH_S) -> None:
        """Flush every ``interval_s`` until cancelled, then once more."""
        try:
            while True:
                await asyncio.sleep(interval_s)
                await self._flush_logged()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._flush_logged())

    async def _flush_logged(self) -> None:
        try:
            await self.flush_last_used()
        except TransientDatabaseError as exc:
            log.warning("api_key_last_used_not_written", error=str(exc))
        except Exception as exc:  # noqa: BLE001 - the loop must outlive any one failure; logged
            log.error("api_key_last_used_failed", error_type=type(exc).__name__)  # noqa: TRY400


SessionCaller = Callable[[ASGIConnection[Any, Any, Any, Any]], Awaitable[Caller]]


class Authorizer:
    """The app-wide check, see the module's docstring, as middleware (:meth:`middleware`, for
    Litestar's ``middleware=[...]``). It runs after routing, so it reads the route's ``opt``
    from ``scope["route_handler"]``; what it raises is answered by the app's exception
    handlers. A key let in then spends one request of its rate limit
    (``queue_api.rate_limit``). ``session`` finds a console route's caller (and checks its
    CSRF token); without it console routes are refused.

    Middleware rather than a Litestar guard: a guard is handed a copy of the route handler on
    every request, which cost a tenth of ``POST /jobs``'s CPU."""

    def __init__(
        self,
        checker: KeyChecker,
        limiter: RateLimiter,
        *,
        enabled: bool,
        session: SessionCaller | None = None,
    ) -> None:
        self._checker = checker
        self._limiter = limiter
        self._enabled = enabled
        self._session = session

    def middleware(self, app: ASGIApp) -> ASGIApp:
        async def authorized(scope: AsgiScope, receive: Receive, send: Send) -> None:
            if scope["type"] == ScopeType.HTTP:
                caller = await self.authorize(scope, receive)
                if caller is not None:
                    scope["state"][CALLER_STATE] = caller
            await app(scope, receive, send)

        # What authorize() raises (401, 403, 429, 503) is answered right here, through the
        # ``send`` the middleware outside this one wrapped: request telemetry's, which adds the
        # request id and records the status in the log line and the metrics. Left to Litestar,
        # it is answered by the exception handling around the whole app, outside every
        # middleware: the response lacked the request id and was counted as a 500. Litestar's
        # own session authentication middleware wraps itself the same way.
        return ExceptionHandlerMiddleware(app=authorized, debug=None)

    async def authorize(self, scope: AsgiScope, receive: Receive) -> Caller | None:
        """The caller a request is let in as, None on an open route; or 401/403."""
        handler = scope["route_handler"]
        opt = handler.opt
        if opt.get(PUBLIC_OPT) or getattr(handler, "http_methods", None) == _OPTIONS:
            return None  # OPTIONS (Litestar's own handler) only lists the allowed methods
        needed: frozenset[Scope] | None = opt.get(SCOPES_OPT)
        if needed is None:
            raise PermissionDeniedException(detail="this route declares no scope")
        caller = await self._caller(scope, receive, session=bool(opt.get(SESSION_OPT)))
        missing = sorted(needed - caller.scopes)
        if missing:
            names = " ".join(missing)
            raise PermissionDeniedException(
                detail=f"this API key lacks the scope {names}",
                headers={
                    "WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{names}"'
                },
            )
        if caller.key is not None:
            await self._limiter.admit_request(caller.key)
        return caller

    async def _caller(self, scope: AsgiScope, receive: Receive, *, session: bool) -> Caller:
        if session:
            if self._session is None:
                raise PermissionDeniedException(detail="the web console is not configured")
            # A Request, not a bare connection: the CSRF token may be in a form body, which a
            # Request reads once and keeps in the scope for the handler.
            return await self._session(Request(scope, receive))
        if self._enabled:
            return await self._checker.caller(raw_header(scope, b"authorization"))
        return ANYONE
