"""The web console for operators, at ``/ui``: served by the API process itself, same image.

Why server-rendered pages with htmx rather than a single-page app: operators get pages that load
fast, work with the keyboard and screen readers as plain HTML does, and keep working when a
script fails (every action is a plain form); maintainers get Jinja templates and one small
vendored script (htmx, pinned, in ``static/vendor``) with no build step, no Node toolchain and no
second API client to keep in step: each page calls the very functions the JSON routes call
(``queue_api.routes``), so the console cannot show or do what the API would not. htmx only
reloads the live fragments (``pages.POLL_S``) while the tab is visible.

Every asset comes from the API (``/ui/static``), none from a CDN; the pages carry a strict
Content-Security-Policy (``script-src 'self'``, no inline script or style:
``queue_api.security_headers``). Sign-in, sessions and CSRF: ``queue_api.ui.sessions``.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from litestar import Request, Response, Router
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import HTTPException
from litestar.file_system import BaseLocalFileSystem
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from litestar.status_codes import HTTP_303_SEE_OTHER, HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import PathType
from litestar.types.file_types import FileInfo

from queue_api.auth import PUBLIC
from queue_api.errors import EXCEPTION_HANDLERS
from queue_api.ui.actions import ConsoleActions
from queue_api.ui.pages import ConsolePages
from queue_api.ui.rendering import UI_DIR, page
from queue_api.ui.signin import ConsoleSignIn

UI_PATH: Final = "/ui"
STATIC_PATH: Final = "/ui/static"
STATIC_MAX_AGE_S: Final = 3600
HTTP_401_UNAUTHORIZED: Final = 401


def _as_page(json_handler: Callable[..., Response[Any]]) -> Callable[..., Response[Any]]:
    """The app's handler of an error (``queue_api.errors``: its status and words), answered as
    a console page; not signed in (401): to the sign-in page."""

    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        answer: Response[Any] = json_handler(request, exc)
        if answer.status_code == HTTP_401_UNAUTHORIZED:
            if request.headers.get("hx-request"):  # a fragment: htmx follows HX-Redirect
                return Response(
                    b"", status_code=HTTP_401_UNAUTHORIZED, headers={"HX-Redirect": "/ui/login"}
                )
            return Redirect(f"{UI_PATH}/login", status_code=HTTP_303_SEE_OTHER)
        status = answer.status_code or HTTP_500_INTERNAL_SERVER_ERROR
        body = answer.content if isinstance(answer.content, dict) else {}
        extra = exc.extra if isinstance(exc, HTTPException) and exc.extra else None
        return page(
            request,
            "error.html",
            status_code=status,
            status=status,
            detail=body.get("detail", "error"),
            extra=extra if isinstance(extra, list) else None,
        )

    return handle


def console_router() -> Router:
    """``/ui``: the pages, the actions and sign-in; each route declares its scopes with
    ``requires_session`` (or is PUBLIC: the sign-in page), so auth.Authorizer checks
    them against the session (fail closed, as for every route)."""
    return Router(
        UI_PATH,
        route_handlers=[ConsoleSignIn, ConsolePages, ConsoleActions],
        exception_handlers={
            kind: _as_page(handler) for kind, handler in EXCEPTION_HANDLERS.items()
        },
        include_in_schema=False,
    )


class ShippedFiles(BaseLocalFileSystem):
    """The static directory as shipped: its files, listed once at start-up, and nothing else.
    Any other path is a 404 before the disk is asked, so that a client's odd path cannot become
    a 500 (a NUL, a name too long, a file taken for a directory all made the operating system
    raise), nor a 404 naming where the API is installed (Litestar's, for a directory)."""

    def __init__(self, root: Path) -> None:
        self._files = frozenset(str(p) for p in root.resolve().rglob("*") if p.is_file())

    async def info(self, path: PathType, **kwargs: Any) -> FileInfo:  # noqa: ANN401 - Litestar's
        if str(path) not in self._files:
            raise FileNotFoundError(path)
        return await super().info(path, **kwargs)


def static_router() -> Router:
    """The console's own CSS and script and the vendored ones (htmx; Redoc and Swagger UI for
    ``/schema``), open to anyone like the pages that load them. Vendored files carry their
    version in their path, so a cached copy is never stale across an upgrade."""
    return create_static_files_router(
        path=STATIC_PATH,
        directories=[UI_DIR / "static"],
        file_system=ShippedFiles(UI_DIR / "static"),
        opt=PUBLIC,
        include_in_schema=False,
        cache_control=CacheControlHeader(max_age=STATIC_MAX_AGE_S),
        send_as_attachment=False,
    )
