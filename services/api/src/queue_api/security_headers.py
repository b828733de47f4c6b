"""Response headers every answer of the API carries, for browsers and proxies between a client
and us: the API speaks JSON to programs, but a browser may be pointed at it (the OpenAPI pages
today, a web console later), and a shared cache may sit in front of it.

- ``X-Content-Type-Options: nosniff``: a JSON body is never guessed into HTML or script.
- ``Content-Security-Policy``: a JSON answer may load nothing and be framed by nobody. An HTML
  page (Swagger UI, which loads its scripts from a CDN) only gets ``frame-ancestors 'none'``: a
  page that needs a policy of its own sets it, and this one is then left alone.
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
_ALWAYS: Final[list[tuple[bytes, bytes]]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
CSP_FOR_DATA: Final = b"default-src 'none'; frame-ancestors 'none'"
CSP_FOR_PAGES: Final = b"frame-ancestors 'none'"


async def add_security_headers(message: Message, _scope: Scope) -> None:
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
    headers.extend(_ALWAYS)
    if not csp:
        headers.append((b"content-security-policy", CSP_FOR_PAGES if is_page else CSP_FOR_DATA))
    if not cache_control:
        headers.append((b"cache-control", b"no-store"))
    message["headers"] = headers
