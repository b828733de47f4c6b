"""Requests that another site's page makes the operator's browser send: refused before any route.

The API answers whoever reaches it, and a browser reaches it on behalf of every page it shows.
Two ways a foreign page could use that, and what stops each:

1. **Cross-site requests** (CSRF). A page on ``evil.example`` may send a form POST, or
   ``fetch(url, {method: "POST", mode: "no-cors"})``, to ``http://localhost:8080/v1/jobs/<id>/
   cancel``: the browser sends it, and only hides the answer. With ``API_AUTH=off`` nothing
   else stops it. So a request that changes state (any method but GET, HEAD and OPTIONS) is
   refused with a 403 when the browser says it comes from another site:

   - ``Sec-Fetch-Site`` (sent by current browsers to https and localhost origins) is anything
     but ``same-origin`` or ``none`` (typed by the user): ``cross-site``, ``same-site`` (a
     sibling subdomain is another origin), or a value no browser sends;
   - otherwise ``Origin`` (sent on every cross-origin POST, also from plain-http pages) is not
     the request's own: its host and port are not the ``Host`` header's. The scheme is not
     compared: behind a proxy that ends TLS the API sees http while the page is https, and a
     page of the same host over the other scheme is the same machine's. ``null`` (a sandboxed
     frame, ``file:``, a redirect), anything that is not ``scheme://host[:port]``, and more
     than one ``Origin`` header are refused too;
   - unless that ``Origin`` is one of ``API_CORS_ALLOW_ORIGINS`` (matched as the CORS
     middleware matches it): those pages are meant to call the API.

   A request with neither header is not a browser's on another site's behalf (curl, the
   Python client, workers, other services) and is let through. This is the check Go's
   ``net/http.CrossOriginProtection`` makes.

   It applies whatever ``API_AUTH`` says. With auth on, a browser never attaches the bearer
   key by itself, so a cross-site request fails anyway, and no caller is lost by refusing it
   earlier: the console's forms and htmx requests are same-origin (``Sec-Fetch-Site:
   same-origin``, ``Origin`` its own); Swagger UI on ``/schema`` is same-origin; pages of
   other origins can only send a key through CORS, whose origins are let through. One code
   path also means the check is exercised by every test and deployment, not only by the
   rare one with auth off.

2. **DNS rebinding.** A page on ``rebind.evil.example:8080`` whose name is then pointed at
   127.0.0.1 is, to the browser, same-origin with the API: it may read the API's answers and
   post without ``Origin``. The one thing it cannot change is the ``Host`` header, which names
   the attacker's domain. So when a host allow-list applies, a request naming any other host
   is refused (403), reads included:

   - ``API_ALLOWED_HOSTS`` set: the names it lists (any port), ``*`` for any;
   - unset, with ``API_AUTH=off``: none but the always-served ones below. That keeps ``docker
     compose up`` (``localhost:8080``), the tests and Kubernetes probes (the pod's IP) working;
     callers that use another name (``http://queue-api:8080``) must be listed;
   - unset, with auth on: any host. Every request carries a key a foreign page does not have.

   Always served: ``localhost`` and ``*.localhost`` (browsers resolve them to loopback
   themselves) and IP literals (a rebinding page's ``Host`` is its own domain name, never an
   address). A request without ``Host`` (HTTP/1.0) is not a browser's and is served. Reads of
   ``/health``, ``/ready`` and ``/metrics`` are served to any host (``ANY_HOST_PATHS``).

Litestar's ``AllowedHostsConfig`` does not fit: it wraps each route's own handler, which the
enqueue fast path skips (``enqueue_fast_path.check_nothing_bypassed`` refuses to start with
it), cannot accept every IP literal, compares ``Host`` with its port, and answers 400 in
another shape than the API's errors.

Cost: one pass over the raw headers for a request that changes state, or for any request when
a host allow-list applies (a served ``Host`` value is remembered, so it is one set lookup).
Nothing else happens unless a browser's header is there.
"""

import ipaddress
from collections.abc import Iterable
from typing import Final

from litestar.config.cors import CORSConfig
from litestar.enums import ScopeType
from litestar.exceptions import PermissionDeniedException
from litestar.middleware._internal.exceptions.middleware import ExceptionHandlerMiddleware
from litestar.types import ASGIApp, HTTPScope, Receive, Scope, Send

from queue_api.settings import ApiSettings

SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
# Read by whatever name the caller knows the API by: Prometheus scrapes ``api:8080`` in
# compose, and probes come by address or name. Reading them by rebinding tells a page
# counts and liveness, which it could not act on; refusing them blanked the dashboards of
# every deployment with auth off that names no hosts.
ANY_HOST_PATHS: Final = frozenset({"/health", "/ready", "/metrics"})
ANY_HOST: Final = "*"
LOOPBACK_NAME: Final = "localhost"
# Sec-Fetch-Site values of a request the API's own pages, or the user, made.
_OWN_SITE: Final = frozenset({b"same-origin", b"none"})
# Served Host values remembered, so that a client sending new ones cannot grow memory: so
# many, so long at most (a *.localhost name may be as long as a request's head).
_REMEMBERED_HOSTS: Final = 1024
_REMEMBERED_HOST_BYTES: Final = 256
_SHOWN_CHARS: Final = 100  # of a hostile header value, in a refusal's detail


def _shown(value: bytes | str) -> str:
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    return repr(text[:_SHOWN_CHARS] + ("…" if len(text) > _SHOWN_CHARS else ""))


def host_name(host: str) -> str | None:
    """The name a ``Host`` header's value names, lower-case, without its port or a final dot
    (an IPv6 literal keeps its brackets); None if it is not ``name[:port]``."""
    host = host.lower()
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return None
        name, rest = host[: end + 1], host[end + 1 :]
    else:
        name, colon, port = host.partition(":")
        rest = colon + port
    if rest and not (rest[0] == ":" and rest[1:].isascii() and rest[1:].isdigit()):
        return None
    name = name.removesuffix(".")
    return name or None


def is_ip_literal(name: str) -> bool:
    """True for ``127.0.0.1``, ``[::1]`` or any other address (a name from :func:`host_name`)."""
    try:
        if name.startswith("["):
            ipaddress.IPv6Address(name[1:-1])
        else:
            ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


class HostAllowList:
    """The names a request's ``Host`` may name (module docstring, 2.), besides the ones always
    served. ``*`` in ``names``: any."""

    def __init__(self, names: Iterable[str]) -> None:
        self._names = frozenset(name.lower().removesuffix(".") for name in names)
        self._served: set[bytes] = set()

    @property
    def names(self) -> frozenset[str]:
        return self._names

    def serves(self, host: str) -> bool:
        name = host_name(host)
        if name is None:
            return False
        return (
            ANY_HOST in self._names
            or name in self._names
            or name == LOOPBACK_NAME
            or name.endswith("." + LOOPBACK_NAME)
            or is_ip_literal(name)
        )

    def check(self, host: bytes) -> None:
        """403 unless ``host`` (a raw ``Host`` value) is served."""
        if host in self._served:
            return
        if not self.serves(host.decode("latin-1")):
            raise PermissionDeniedException(
                detail=(
                    f"this API does not answer to the Host {_shown(host)}: name it in "
                    "API_ALLOWED_HOSTS (a page on a foreign domain could otherwise reach it "
                    "by DNS rebinding)"
                )
            )
        if len(self._served) < _REMEMBERED_HOSTS and len(host) <= _REMEMBERED_HOST_BYTES:
            self._served.add(host)


def host_allow_list(settings: ApiSettings) -> HostAllowList | None:
    """The allow-list ``settings`` ask for; None: any host (module docstring, 2.)."""
    if settings.allowed_hosts:
        return None if ANY_HOST in settings.allowed_hosts else HostAllowList(settings.allowed_hosts)
    if settings.auth == "off":
        return HostAllowList(())
    return None


async def _answer(refusal: Exception, scope: Scope, receive: Receive, send: Send) -> None:
    """``refusal`` answered by the app's exception handlers, through request telemetry's
    ``send`` (as the key check's refusals are): logged and counted with its status and request
    id. Litestar's exception middleware is built for the refusal only: wrapped around every
    request it cost 1.2 µs each, three times the check."""

    async def refuse(_scope: Scope, _receive: Receive, _send: Send) -> None:
        raise refusal

    await ExceptionHandlerMiddleware(app=refuse, debug=None)(scope, receive, send)


def _same_host(origin: bytes, host: bytes | None) -> bool:
    """Whether ``origin`` is ``scheme://<host>``: the request's own, whatever its scheme."""
    scheme, separator, authority = origin.partition(b"://")
    return (
        host is not None
        and bool(separator)
        and scheme.lower() in (b"http", b"https")
        and authority.lower() == host.lower()
        and not any(c in authority for c in b"/?#@\\")
    )


class BrowserRequestGuard:
    """The checks of the module's docstring, as middleware (:meth:`middleware`, for
    Litestar's ``middleware=[...]``, before the key check and the enqueue fast path)."""

    def __init__(self, *, hosts: HostAllowList | None, cors: CORSConfig | None) -> None:
        self._hosts = hosts
        self._cors = cors

    def middleware(self, app: ASGIApp) -> ASGIApp:
        check = self.check

        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == ScopeType.HTTP:
                try:
                    check(scope)
                except PermissionDeniedException as refusal:
                    await _answer(refusal, scope, receive, send)
                    return
            await app(scope, receive, send)

        return guarded

    def check(self, scope: HTTPScope) -> None:
        """403 if the request is refused (module docstring)."""
        changes = scope["method"] not in SAFE_METHODS
        hosts = self._hosts
        if not changes and (hosts is None or scope["path"] in ANY_HOST_PATHS):
            return
        host: bytes | None = None
        origin: bytes | None = None
        origins = 0
        fetch_site = False
        foreign_site: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"host":
                if hosts is not None:
                    hosts.check(value)
                host = value
            elif name == b"origin":
                origins += 1
                origin = value
            elif name == b"sec-fetch-site":
                fetch_site = True
                if value not in _OWN_SITE:
                    foreign_site = value
        if changes and (origins or fetch_site):
            self._check_site(origin, origins, foreign_site, host, fetch_site=fetch_site)

    def _check_site(
        self,
        origin: bytes | None,
        origins: int,
        foreign_site: bytes | None,
        host: bytes | None,
        *,
        fetch_site: bool,
    ) -> None:
        if origins > 1:
            raise PermissionDeniedException(
                detail="more than one Origin header: no browser sends that; refused"
            )
        if (
            origin is not None
            and self._cors is not None
            and self._cors.is_origin_allowed(origin.decode("latin-1"))
        ):
            return  # a page API_CORS_ALLOW_ORIGINS lets in
        if foreign_site is not None:
            raise PermissionDeniedException(
                detail=(
                    f"a page of another site (Sec-Fetch-Site: {_shown(foreign_site)}) may not "
                    "change anything through this API; only the origins in "
                    "API_CORS_ALLOW_ORIGINS may"
                )
            )
        if fetch_site:
            return  # the browser says the API's own page sent it: Origin is not needed
        if origin is not None and not _same_host(origin, host):
            raise PermissionDeniedException(
                detail=(
                    f"a page of another site (Origin: {_shown(origin)}) may not change "
                    "anything through this API; only the origins in API_CORS_ALLOW_ORIGINS may"
                )
            )
