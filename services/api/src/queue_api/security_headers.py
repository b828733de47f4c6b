"""Response headers every answer of the API carries, for browsers and proxies between a client
and us: the API speaks JSON to programs, but a browser may be pointed at it (the OpenAPI pages
today, a web console later), and a shared cache may sit in front of it.

- ``X-Content-Type-Options: nosniff``: a JSON body is never guessed into HTML or script.
- ``Content-Security-Policy``: a JSON answer may load nothing and be framed by nobody. The web
  console (``/ui``) may load only its own scripts, styles and images, with no inline script or
  style, and post forms only to us. The OpenAPI pages (``/schema``) may load only from this
  origin too (their vendored bundles), and run no inline script either (``openapi_pages``),
  but keep the inline styles their renderers write. Any other HTML page gets
  ``frame-ancestors 'none'``; a page that sets a policy of its own is left alone.
- ``X-Frame-Options: DENY`` for browsers that predate ``frame-ancestors``.
- ``Referrer-Policy: no-referrer``: job ids in our URLs go nowhere else.
- ``Cache-Control: no-store`` unless a route says otherwise: job payloads and statuses must not
  be kept by a shared cache.
- ``Cross-Origin-Resource-Policy: same-origin``: other sites cannot embed our answers.

The server banner is switched off where uvicorn is started (``__main__``). HSTS belongs where TLS
ends (the ingress or proxy), not in a process that serves plain HTTP behind it.
"""

from typing import Final

from litestar.types import Message, Scope

# Raw (name, value) pairs, lower-case names as ASGI wants them: appended to each answer's header
# list as they are, which costs a fraction of parsing the headers into a mapping per request.
ALWAYS: Final[list[tuple[bytes, bytes]]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
CSP_FOR_DATA: Final = b"default-src 'none'; frame-ancestors 'none'"
CSP_FOR_PAGES: Final = b"frame-ancestors 'none'"
CSP_FOR_CONSOLE: Final = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    b"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
CSP_FOR_DOCS: Final = (
    b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
    b"form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def _page_policy(path: str) -> bytes:
    if path == "/ui" or path.startswith("/ui/"):
        return CSP_FOR_CONSOLE
    if path == "/schema" or path.startswith("/schema/"):
        return CSP_FOR_DOCS
    return CSP_FOR_PAGES


async def add_security_headers(message: Message, scope: Scope) -> None:
    """Litestar ``before_send`` hook: app-wide, so that every answer gets the headers, those
    no route handles (404, 405) and those of the exception handlers included."""
    if message["type"] != "http.response.start":
        return
    headers: list[tuple[bytes, bytes]] = list(message.get("headers") or ())
    csp = cache_control = False
    is_page = False
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-security-policy":
            csp = True
        elif lowered == b"cache-control":
            cache_control = True
        elif lowered == b"content-type":
            is_page = value.startswith(b"text/html")
    headers.extend(ALWAYS)
    if not csp:
        policy = _page_policy(scope.get("path", "")) if is_page else CSP_FOR_DATA
        headers.append((b"content-security-policy", policy))
    if not cache_control:
        headers.append((b"cache-control", b"no-store"))
    message["headers"] = headers
