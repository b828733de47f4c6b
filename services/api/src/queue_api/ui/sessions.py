"""The web console's sessions and CSRF tokens: who is signed in, and that a form came from us.

Signing in posts an API key once. The API checks it like a Bearer key and answers with a
session cookie: HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it),
Secure when the request came over https (or always: ``API_UI_COOKIES_ALWAYS_SECURE``), scoped
to ``/ui``. The cookie is signed (HMAC-SHA256
with ``API_UI_SECRET``), not encrypted, and holds no secret: the key's prefix, a digest of its
stored hash (:func:`queue_api.auth.session_fingerprint`), an expiry and a random nonce. Every
request checks the signature and the expiry, then the key itself through the same
:class:`~queue_api.auth.KeyChecker` as Bearer keys: a revoked or expired key, or changed scopes,
reach open sessions within ``API_AUTH_CACHE_S``. The only server-side state is the list of
sessions signed out before their expiry (``console_sign_outs``, in the database, so every
replica refuses them at once); any replica that shares the secret serves any other session.

CSRF: every form and htmx request that changes something carries a token derived from the
session's nonce (HMAC, so it cannot be made without the secret); the sign-in form, before any
session, uses a nonce of its own in a short-lived cookie (double submit, signed). A missing or
wrong token is a 403. The JSON API is untouched: it takes Bearer keys only and never reads
these cookies (``queue_api.auth``).
"""

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.exceptions import ClientException, NotAuthorizedException, PermissionDeniedException
from litestar.status_codes import HTTP_415_UNSUPPORTED_MEDIA_TYPE

from queue_api.auth import ANYONE, Caller, KeyChecker
from queue_core.keys import KeyStore
from queue_core.log import get_logger

log = get_logger("queue_api.ui.sessions")

SESSION_COOKIE: Final = "tq_ui_session"
LOGIN_COOKIE: Final = "tq_ui_login"
CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "x-csrf-token"
COOKIE_PATH: Final = "/ui"
LOGIN_COOKIE_S: Final = 3600  # a sign-in form older than this must be loaded again
MAX_COOKIE_CHARS: Final = 1024  # ours are about 200; anything longer is not ours
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_NONCE_BYTES: Final = 16
_MIN_SECRET_CHARS: Final = 32


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode("ascii") + b"=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in session: ``prefix`` and ``fingerprint`` are None when API_AUTH=off."""

    prefix: str | None
    fingerprint: str | None
    expires_at: float  # Unix time
    nonce: str


class SessionSigner:
    """Signs and checks the console's cookies and tokens with one secret."""

    def __init__(self, secret: str | None) -> None:
        if secret is None:
            log.warning(
                "ui_secret_generated",
                detail=(
                    "API_UI_SECRET is not set: web console sessions are signed with a random "
                    "secret of this process, so they end when it restarts and are not valid on "
                    "other replicas; set API_UI_SECRET or API_UI_SECRET_FILE to share one"
                ),
            )
            secret = secrets.token_urlsafe(32)
        if len(secret) < _MIN_SECRET_CHARS:  # pragma: no cover - the settings refuse it first
            raise ValueError(f"the UI secret must be at least {_MIN_SECRET_CHARS} characters")
        self._key = hashlib.sha256(b"queue-ui:" + secret.encode()).digest()

    def _mac(self, purpose: str, data: bytes) -> str:
        return _b64(hmac.new(self._key, purpose.encode() + b"|" + data, hashlib.sha256).digest())

    def seal(self, session: Session) -> str:
        body = _b64(
            json.dumps(
                {
                    "p": session.prefix,
                    "f": session.fingerprint,
                    "e": session.expires_at,
                    "n": session.nonce,
                },
                separators=(",", ":"),
            ).encode()
        )
        return f"{body}.{self._mac('session', body.encode())}"

    def open(self, cookie: str | None, *, now: float) -> Session | None:
        """The session a cookie holds, or None: absent, not signed by us, or expired."""
        if not cookie or len(cookie) > MAX_COOKIE_CHARS:
            return None
        body, _, mac = cookie.partition(".")
        if not hmac.compare_digest(mac.encode(), self._mac("session", body.encode()).encode()):
            return None
        try:
            data: Any = json.loads(_unb64(body))
            session = Session(
                prefix=data["p"],
                fingerprint=data["f"],
                expires_at=float(data["e"]),
                nonce=data["n"],
            )
        except (ValueError, KeyError, TypeError):  # pragma: no cover - we signed it
            return None
        return session if session.expires_at > now else None

    def csrf_token(self, nonce: str) -> str:
        return self._mac("csrf", nonce.encode())

    def login_token(self, login_nonce: str) -> str:
        return self._mac("login", login_nonce.encode())

    def notice_token(self, nonce: str, notice: str) -> str:
        """What makes an action's notice (``?done=``) shown: made for this session's nonce and
        these words, so a link from elsewhere cannot put words of its own in the console."""
        return self._mac("notice", nonce.encode() + b"|" + notice.encode())


def new_nonce() -> str:
    return secrets.token_urlsafe(_NONCE_BYTES)


def session_cookie(value: str, *, secure: bool, max_age: int | None) -> Cookie:
    return Cookie(
        key=SESSION_COOKIE,
        value=value,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=secure,
        max_age=max_age,
    )


def login_cookie(value: str, *, secure: bool, max_age: int = LOGIN_COOKIE_S) -> Cookie:
    return Cookie(
        key=LOGIN_COOKIE,
        value=value,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=secure,
        max_age=max_age,
    )


async def sent_csrf_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The CSRF token a request carries: the header (htmx) or the form field (plain forms).
    The console's forms are URL-encoded: a multipart body is refused here, before anything
    reads it (its parser fails on a part that is not UTF-8, and a file part is no field's
    value)."""
    # Lowercased: media types are case-insensitive, and Litestar's parser reads them so.
    content_type = connection.headers.get("content-type", "").strip().lower()
    if content_type.startswith("multipart/"):
        raise ClientException(
            status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail="the console's forms are sent as application/x-www-form-urlencoded",
        )
    header = connection.headers.get(CSRF_HEADER)
    if header:
        return header
    if content_type.startswith("application/x-www-form-urlencoded"):
        form = await connection.form()  # type: ignore[attr-defined]  # a Request: see auth.Authorizer
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


def _refuse_csrf() -> PermissionDeniedException:
    return PermissionDeniedException(
        detail="the form's CSRF token is missing or wrong: reload the page and try again"
    )


class Sessions:
    """Finds the caller of a console request from its session (the app-wide check's
    ``session``, see ``queue_api.auth``) and checks the CSRF token of one that changes
    something."""

    def __init__(
        self,
        signer: SessionSigner,
        checker: KeyChecker,
        *,
        auth_enabled: bool,
        session_s: float,
        always_secure: bool = False,
    ) -> None:
        self.signer = signer
        self.checker = checker
        self.auth_enabled = auth_enabled
        self.session_s = session_s
        self.always_secure = always_secure
        self._store: KeyStore | None = None

    def attach(self, store: KeyStore) -> None:
        self._store = store

    def _attached(self) -> KeyStore:
        if self._store is None:  # pragma: no cover - the lifespan attaches it before requests
            raise RuntimeError("Sessions used before attach()")
        return self._store

    def secure_cookies(self, connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
        """Whether the cookies of a response to ``connection`` are marked Secure: always
        (``API_UI_COOKIES_ALWAYS_SECURE``), else when it came over https as uvicorn sees it
        (X-Forwarded-Proto counts from trusted proxies only)."""
        return self.always_secure or connection.url.scheme == "https"

    def current(self, connection: ASGIConnection[Any, Any, Any, Any]) -> Session | None:
        return self.signer.open(connection.cookies.get(SESSION_COOKIE), now=time.time())

    async def caller(self, connection: ASGIConnection[Any, Any, Any, Any]) -> Caller:
        session = self.current(connection)
        if session is None:
            raise NotAuthorizedException(detail="sign in to the web console first")
        if await self._attached().console_session_signed_out(session.nonce):
            raise NotAuthorizedException(detail="this session was signed out: sign in again")
        if connection.scope.get("method", "GET") not in _SAFE_METHODS:
            sent = await sent_csrf_token(connection)
            if not hmac.compare_digest(
                sent.encode(), self.signer.csrf_token(session.nonce).encode()
            ):
                raise _refuse_csrf()
        connection.state["ui_session"] = session
        if session.prefix is None or session.fingerprint is None:
            if self.auth_enabled:  # signed in while API_AUTH was off: not valid now
                raise NotAuthorizedException(detail="sign in to the web console again")
            return ANYONE
        return await self.checker.session_caller(session.prefix, session.fingerprint)

    async def sign_out(self, session: Session) -> None:
        """End ``session`` on every replica: a copy of its cookie is refused from now on."""
        expires_at = datetime.fromtimestamp(session.expires_at, UTC)
        await self._attached().sign_out_console_session(session.nonce, expires_at)

    def new_session(self, prefix: str | None, fingerprint: str | None) -> Session:
        return Session(
            prefix=prefix,
            fingerprint=fingerprint,
            expires_at=time.time() + self.session_s,
            nonce=new_nonce(),
        )

    async def check_login_token(self, connection: ASGIConnection[Any, Any, Any, Any]) -> None:
        """The sign-in form's own CSRF check (there is no session yet): its token must match
        the nonce in the sign-in cookie set with the form."""
        nonce = connection.cookies.get(LOGIN_COOKIE) or ""
        if not nonce:  # refused before its body is read
            raise _refuse_csrf()
        sent = await sent_csrf_token(connection)
        if not hmac.compare_digest(sent.encode(), self.signer.login_token(nonce).encode()):
            raise _refuse_csrf()
