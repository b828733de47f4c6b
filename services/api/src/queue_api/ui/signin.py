"""Signing in to the console with an API key, and out (``queue_api.ui.sessions`` says how the
session is kept). The sign-in page is open to anyone; it shows a form and sets the cookie its
CSRF token is checked against."""

from typing import Any, Final

from litestar import Controller, Request, get, post
from litestar.exceptions import NotAuthorizedException
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_303_SEE_OTHER

from queue_api.auth import PUBLIC, requires_session
from queue_api.ui.rendering import SESSION_STATE, page, sessions_of
from queue_api.ui.sessions import login_cookie, new_nonce, session_cookie
from queue_core.keys import Scope

MAX_KEY_CHARS: Final = 200  # a key is 55 characters
HTTP_400_BAD_REQUEST: Final = 400
HTTP_401_UNAUTHORIZED: Final = 401
HTTP_403_FORBIDDEN: Final = 403


def _form(request: Request[Any, Any, Any], *, error: str | None, status_code: int) -> Template:
    sessions = sessions_of(request)
    nonce = new_nonce()
    response = page(
        request,
        "login.html",
        status_code=status_code,
        error=error,
        login_token=sessions.signer.login_token(nonce),
        auth_enabled=sessions.auth_enabled,
    )
    response.cookies.append(login_cookie(nonce, secure=sessions.secure_cookies(request)))
    return response


class ConsoleSignIn(Controller):
    path = "/"

    @get("/login", opt=PUBLIC, include_in_schema=False)
    async def login_form(self, request: Request[Any, Any, Any]) -> Template:
        return _form(request, error=None, status_code=200)

    @post("/login", opt=PUBLIC, include_in_schema=False)
    async def login(self, request: Request[Any, Any, Any]) -> Template | Redirect:
        sessions = sessions_of(request)
        await sessions.check_login_token(request)
        if not sessions.auth_enabled:
            session = sessions.new_session(None, None)
        else:
            key = (await request.form()).get("key")
            if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_CHARS:
                return _form(request, error="Enter an API key.", status_code=HTTP_400_BAD_REQUEST)
            try:
                caller, fingerprint = await sessions.checker.signed_in(key.strip())
            except NotAuthorizedException as exc:
                return _form(
                    request,
                    error=f"Not signed in: {exc.detail}.",
                    status_code=HTTP_401_UNAUTHORIZED,
                )
            if Scope.JOBS_READ not in caller.scopes:
                return _form(
                    request,
                    error="Not signed in: the console needs a key with the scope jobs:read.",
                    status_code=HTTP_403_FORBIDDEN,
                )
            assert caller.key is not None  # noqa: S101 - auth is on: a key let it in
            session = sessions.new_session(caller.key.prefix, fingerprint)
        response = Redirect("/ui/", status_code=HTTP_303_SEE_OTHER)
        secure = sessions.secure_cookies(request)
        response.cookies.append(
            session_cookie(
                sessions.signer.seal(session), secure=secure, max_age=int(sessions.session_s)
            )
        )
        response.cookies.append(login_cookie("", secure=secure, max_age=0))  # used: gone
        return response

    @post("/logout", **requires_session())
    async def logout(self, request: Request[Any, Any, Any]) -> Redirect:
        sessions = sessions_of(request)
        # Not only the browser's cookie: a copy of it (a shared machine, a proxy's log) would
        # stay good, CSRF token included, until it expired.
        await sessions.sign_out(request.state[SESSION_STATE])
        response = Redirect("/ui/login", status_code=HTTP_303_SEE_OTHER)
        secure = sessions.secure_cookies(request)
        response.cookies.append(session_cookie("", secure=secure, max_age=0))
        return response
