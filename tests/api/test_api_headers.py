"""Headers every answer carries (security headers, no server banner) and CORS, off unless an
allow-list is configured."""

import re
from uuid import uuid4

import httpx
import pytest
from litestar.testing import AsyncTestClient

from api.support import ApiClient
from e2e.stack import Api
from queue_api.app import create_app
from queue_api.security_headers import CSP_FOR_CONSOLE, CSP_FOR_DOCS
from queue_api.settings import ApiSettings

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-resource-policy": "same-origin",
}
CONSOLE = "https://console.example.com"


def _assert_secured(response: httpx.Response, csp: str) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (response.status_code, name, response.headers)
    assert response.headers.get("content-security-policy") == csp, response.headers
    assert response.headers.get_list("cache-control") == ["no-store"], response.headers


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/health", 200),
        ("GET", "/nowhere", 404),  # no route: the headers are added app-wide, not per route
        ("DELETE", "/health", 405),
        ("GET", "/jobs/status?id=not-a-uuid", None),  # 400, or 401 before the id is looked at
        ("POST", "/jobs", None),  # an error answer of ours, whatever its status
    ],
)
async def test_every_answer_carries_the_security_headers(
    shared_client: ApiClient, method: str, path: str, status: int | None
) -> None:
    response = await shared_client.request(method, path, content=b"x")
    if status is not None:
        assert response.status_code == status
    _assert_secured(response, "default-src 'none'; frame-ancestors 'none'")


async def test_html_pages_may_load_their_scripts_but_not_be_framed(
    shared_client: ApiClient,
) -> None:
    response = await shared_client.get("/schema/swagger")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    _assert_secured(response, CSP_FOR_DOCS.decode())
    # Their scripts and styles are the API's own copies, no CDN's.
    assert "/ui/static/vendor/swagger-ui-" in response.text
    assert "https://" not in response.text.split("<body", 1)[0]


@pytest.mark.parametrize("path", ["/schema", "/schema/redoc", "/schema/swagger"])
async def test_the_openapi_pages_may_run_no_inline_script(
    shared_client: ApiClient, path: str
) -> None:
    # They share the console's origin: a script injected there could read a console page and
    # its CSRF token. Their renderers start from the API's own files, not an inline script.
    response = await shared_client.get(path)

    assert response.status_code == 200
    directives = [d.strip() for d in response.headers["content-security-policy"].split(";")]
    assert "script-src 'self'" in directives
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", response.text) == []


async def test_the_console_pages_may_run_only_their_own_scripts(
    shared_client: ApiClient,
) -> None:
    response = await shared_client.get("/ui/login")

    assert response.status_code == 200
    _assert_secured(response, CSP_FOR_CONSOLE.decode())
    assert "script-src 'self';" in response.headers["content-security-policy"]


async def test_no_cors_unless_origins_are_configured(shared_client: ApiClient) -> None:
    preflight = await shared_client.options(
        "/jobs",
        headers={"Origin": CONSOLE, "Access-Control-Request-Method": "POST"},
    )
    simple = await shared_client.get("/health", headers={"Origin": CONSOLE})

    for response in (preflight, simple):
        assert not [h for h in response.headers if h.startswith("access-control-")], response


async def test_cors_answers_only_the_configured_origins(shared_db_url: str) -> None:
    settings = ApiSettings(DATABASE_URL=shared_db_url, cors_allow_origins=(CONSOLE,))
    async with AsyncTestClient(app=create_app(settings)) as client:
        allowed = await client.options(
            "/jobs",
            headers={
                "Origin": CONSOLE,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        other = await client.get("/health", headers={"Origin": "https://evil.example"})

    assert allowed.status_code in {200, 204}
    assert allowed.headers["access-control-allow-origin"] == CONSOLE
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in allowed.headers
    assert "access-control-allow-origin" not in other.headers


def test_the_real_server_sends_no_banner(api_process: Api) -> None:
    response = httpx.get(api_process.base_url + "/health", timeout=5)

    assert response.status_code == 200
    assert "server" not in response.headers
    _assert_secured(response, "default-src 'none'; frame-ancestors 'none'")


@pytest.mark.parametrize(
    "path", ["/health", "/ready", "/v1/jobs?limit=1", f"/jobs/status?id={uuid4()}", "/v1/queues"]
)
def test_the_real_server_answers_head_as_get_without_the_body(api_process: Api, path: str) -> None:
    """RFC 9110: a general-purpose server supports HEAD wherever it supports GET. Litestar
    answered 405 on every GET route, and monitors that probe with HEAD saw the API down."""
    with api_process.client() as client:
        get = client.get(path)
        head = client.head(path)

    assert head.status_code == get.status_code
    assert head.content == b""
    for header in ("content-type", "content-length", "cache-control", "x-content-type-options"):
        assert head.headers.get(header) == get.headers.get(header), header


def test_a_head_request_is_checked_and_refused_as_its_get_would_be(api_process: Api) -> None:
    without_key = httpx.head(api_process.base_url + "/v1/jobs", timeout=5)
    assert without_key.status_code == 401
    assert without_key.content == b""
    with api_process.client() as client:  # a route with no GET: the 405 a GET gets
        assert client.head("/v1/jobs/batch").status_code == 405
        assert client.get("/v1/jobs/batch").status_code == 405
