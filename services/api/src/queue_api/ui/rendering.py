"""How the console's pages are rendered: the Jinja environment and its filters, and the context
every page shares (who is signed in, what the key may do, the CSRF token)."""

import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Request
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.template.config import TemplateConfig

from queue_api.auth import CALLER_STATE, Caller
from queue_api.ui.assets import static_url
from queue_api.ui.sessions import Session, Sessions
from queue_core.keys import Scope

UI_DIR: Final = Path(__file__).parent
SESSIONS_STATE: Final = "ui_sessions"
SESSION_STATE: Final = "ui_session"
MAX_JSON_SHOWN: Final = 256 * 1024  # characters of a payload or result shown in a page
HTMX_VERSION: Final = "2.0.11"
NOTICE_FIELD: Final = "done"
NOTICE_TOKEN_FIELD: Final = "done_token"  # noqa: S105 - a query parameter's name


def _when(value: datetime | None) -> str:
    """A timestamp as operators read it: UTC, to the second."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _when_text(value: object) -> str:
    """A timestamp stored as text (an attempt's error, in the job's JSON) read like the rest."""
    if not isinstance(value, str):
        return "—" if value is None else str(value)
    try:
        return _when(datetime.fromisoformat(value))
    except ValueError:
        return value


def _age(seconds: float) -> str:
    """A duration, short: 45 s, 12 min 3 s, 5 h 2 min, 3 d 4 h."""
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def _pretty(value: Any) -> str:  # noqa: ANN401 - any stored JSON value
    """A JSON value indented for reading, cut at :data:`MAX_JSON_SHOWN` characters."""
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    if len(text) > MAX_JSON_SHOWN:
        return text[:MAX_JSON_SHOWN] + "\n… (cut: read it whole with GET /v1/jobs/{id})"
    return text


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    environment = Environment(
        loader=FileSystemLoader(UI_DIR / "templates"),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["when"] = _when
    environment.filters["when_text"] = _when_text
    environment.filters["age"] = _age
    environment.filters["pretty"] = _pretty
    environment.globals["htmx_version"] = HTMX_VERSION
    environment.globals["static_url"] = static_url
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment))


def sessions_of(request: Request[Any, Any, Any]) -> Sessions:
    sessions: Sessions = request.app.state[SESSIONS_STATE]
    return sessions


def notice_query(request: Request[Any, Any, Any], notice: str) -> dict[str, str]:
    """The query parameters that show ``notice`` on the page an action sends the browser to
    (post/redirect/get), to this session only."""
    session: Session = request.scope["state"][SESSION_STATE]
    token = sessions_of(request).signer.notice_token(session.nonce, notice)
    return {NOTICE_FIELD: notice, NOTICE_TOKEN_FIELD: token}


def _notice(request: Request[Any, Any, Any], session: Session | None) -> str | None:
    """What an action of this session just did, from the URL: only if the session made it."""
    notice = request.query_params.get(NOTICE_FIELD)
    token = request.query_params.get(NOTICE_TOKEN_FIELD) or ""
    if not notice or session is None:
        return None
    expected = sessions_of(request).signer.notice_token(session.nonce, notice)
    return notice if hmac.compare_digest(token.encode(), expected.encode()) else None


def page(
    request: Request[Any, Any, Any],
    name: str,
    *,
    status_code: int = 200,
    **context: Any,  # noqa: ANN401 - the template's variables
) -> Template:
    """A page (or fragment) of the console, with what every page shows: the signed-in key,
    which actions it may take (the rest are hidden; the server refuses them anyway) and the
    session's CSRF token."""
    caller: Caller | None = request.scope["state"].get(CALLER_STATE)
    session: Session | None = request.scope["state"].get(SESSION_STATE)
    scopes = frozenset() if caller is None else caller.scopes
    key = None if caller is None else caller.key
    return Template(
        template_name=name,
        status_code=status_code,
        context={
            "key_name": None if key is None else key.name,
            "key_prefix": None if key is None else key.prefix,
            "signed_in": caller is not None,
            "can_admin_jobs": Scope.JOBS_ADMIN in scopes,
            "can_admin_queues": Scope.QUEUES_ADMIN in scopes,
            "csrf_token": (
                "" if session is None else sessions_of(request).signer.csrf_token(session.nonce)
            ),
            "path": request.url.path,
            "done": _notice(request, session),  # what an action just did (303 to here)
            **context,
        },
    )
