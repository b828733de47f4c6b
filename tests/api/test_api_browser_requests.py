"""What another site's page may make the operator's browser do to the API: nothing that changes
state (a cross-site request is refused, whatever API_AUTH says), and nothing at all through a
name that a DNS-rebinding attacker controls (with API_AUTH=off, or API_ALLOWED_HOSTS set).

Clients that are not browsers send neither ``Origin`` nor ``Sec-Fetch-Site`` and are let
through as before; so are the console's own same-origin forms and the CORS origins."""

from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest
from pydantic import ValidationError
from structlog.typing import EventDict

from api.support import LOCAL_BASE_URL, ApiClient, ClientFactory, error_body
from e2e.stack import Stack
from queue_api.settings import ApiSettings

EVIL = "https://evil.example"
CORS_ORIGIN = "https://console.example.com"
JOB: dict[str, Any] = {"type": "noop", "payload": {"n": 1}}
SOME_ID = str(uuid4())

# Every kind of state-changing route: the two enqueue fast paths, Litestar-served actions, bulk
# actions, DELETE, queue pausing, key management.
CHANGES = [
    pytest.param("POST", "/jobs", JOB, id="enqueue-fast-path"),
    pytest.param("POST", "/v1/jobs", JOB, id="v1-enqueue-fast-path"),
    pytest.param("POST", "/v1/jobs/batch", {"jobs": [JOB]}, id="batch"),
    pytest.param("POST", f"/v1/jobs/{SOME_ID}/cancel", None, id="cancel"),
    pytest.param("POST", f"/v1/jobs/{SOME_ID}/retry", None, id="retry"),
    pytest.param("POST", "/v1/jobs/cancel", {"queue": "default"}, id="bulk-cancel"),
    pytest.param("POST", "/v1/jobs/retry", {"queue": "default"}, id="bulk-retry"),
    pytest.param("DELETE", f"/v1/jobs/{SOME_ID}", None, id="delete"),
    pytest.param("POST", "/v1/queues/default/pause", None, id="pause"),
    pytest.param("POST", "/v1/keys", {"name": "x", "scopes": ["jobs:read"]}, id="new-key"),
]

# What a browser sends on another site's behalf, and hostile variants of it.
CROSS_SITE = [
    pytest.param([("sec-fetch-site", "cross-site")], id="sec-fetch-site-cross-site"),
    pytest.param([("sec-fetch-site", "same-site")], id="sec-fetch-site-same-site"),
    pytest.param([("sec-fetch-site", "cross-site"), ("origin", EVIL)], id="sec-fetch-and-origin"),
    pytest.param([("origin", EVIL)], id="origin-only"),  # http pages get no Sec-Fetch-*
    pytest.param([("origin", "null")], id="origin-null"),  # sandboxed frame, file:, data:
    pytest.param([("origin", "http://127.0.0.1:8080.evil.example")], id="origin-suffix"),
    pytest.param([("origin", "http://evil.example/127.0.0.1:8080")], id="origin-with-path"),
    pytest.param([("origin", "127.0.0.1:8080")], id="origin-malformed"),
    pytest.param([("origin", "http://user@127.0.0.1:8080")], id="origin-with-userinfo"),
    pytest.param([("origin", "http://127.0.0.1:8080/")], id="origin-trailing-slash"),
    pytest.param([("origin", LOCAL_BASE_URL), ("origin", EVIL)], id="two-origins"),
    pytest.param([("origin", EVIL), ("origin", LOCAL_BASE_URL)], id="two-origins-2"),
    pytest.param(
        [("sec-fetch-site", "same-origin"), ("sec-fetch-site", "cross-site")],
        id="two-sec-fetch-site",
    ),
    pytest.param([("sec-fetch-site", "no-such-value")], id="sec-fetch-site-unknown"),
]


def _request(
    client: ApiClient,
    method: str,
    path: str,
    body: Any,
    headers: list[tuple[str, str]],
) -> Any:
    content = None if body is None else httpx.Request("POST", "/", json=body).content
    all_headers = [*headers]
    if content is not None:
        all_headers.append(("content-type", "application/json"))
    return client.request(method, path, content=content, headers=all_headers)


@pytest.fixture(name="open_client")
async def fx_open_client(
    make_client: ClientFactory, shared_db_url: str
) -> AsyncIterator[ApiClient]:
    """The API with API_AUTH=off, called as the operator's browser on this machine would."""
    async with make_client(shared_db_url, key=None, auth="off", base_url=LOCAL_BASE_URL) as c:
        yield c


# -- cross-site requests ------------------------------------------------------------------------


async def _assert_refused_and_nothing_changed(
    client: ApiClient,
    db: asyncpg.Connection,
    *,
    method: str,
    path: str,
    body: Any,
    headers: list[tuple[str, str]],
) -> None:
    jobs_before = await db.fetchval("SELECT count(*) FROM jobs")

    response = await _request(client, method, path, body, headers)

    assert response.status_code == 403, response.text
    detail = error_body(response)["detail"]
    assert "another site" in detail or "Origin" in detail, detail
    assert await db.fetchval("SELECT count(*) FROM jobs") == jobs_before
    assert not await db.fetchval("SELECT count(*) FROM queues WHERE paused_at IS NOT NULL")
    assert not await db.fetchval("SELECT count(*) FROM api_keys WHERE name = 'x'")


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([("sec-fetch-site", "cross-site"), ("origin", EVIL)], id="https-page"),
        pytest.param([("origin", EVIL)], id="http-page"),  # no Sec-Fetch-* from http pages
    ],
)
@pytest.mark.parametrize(("method", "path", "body"), CHANGES)
async def test_with_auth_off_no_route_lets_another_site_change_state(
    open_client: ApiClient,
    shared_db: asyncpg.Connection,
    *,
    method: str,
    path: str,
    body: Any,
    headers: list[tuple[str, str]],
) -> None:
    await _assert_refused_and_nothing_changed(
        open_client, shared_db, method=method, path=path, body=body, headers=headers
    )


@pytest.mark.parametrize("headers", CROSS_SITE)
async def test_with_auth_off_hostile_browser_headers_are_refused(
    open_client: ApiClient, shared_db: asyncpg.Connection, headers: list[tuple[str, str]]
) -> None:
    await _assert_refused_and_nothing_changed(
        open_client, shared_db, method="POST", path="/jobs", body=JOB, headers=headers
    )


async def test_a_refused_cross_site_cancel_leaves_the_job_as_it_was(
    make_client: ClientFactory, db_url: str, db: asyncpg.Connection
) -> None:
    async with make_client(db_url, key=None, auth="off", base_url=LOCAL_BASE_URL) as client:
        job_id = (await client.post("/v1/jobs", json=JOB)).json()["id"]
        # What `fetch(url, {method: "POST", mode: "no-cors"})` on another site sends.
        cancel = await client.post(
            f"/v1/jobs/{job_id}/cancel",
            headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"},
        )

    assert cancel.status_code == 403, cancel.text
    assert await db.fetchval("SELECT status FROM jobs WHERE id = $1", job_id) == "pending"


async def test_with_auth_on_a_cross_site_request_is_refused_before_its_key_is_looked_at(
    shared_client: ApiClient, shared_db: asyncpg.Connection, logs: list[EventDict]
) -> None:
    # The shared client sends the admin key: a browser never would on its own, but the check
    # does not depend on auth being off.
    jobs_before = await shared_db.fetchval("SELECT count(*) FROM jobs")

    response = await shared_client.post(
        "/jobs", json=JOB, headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}
    )

    assert response.status_code == 403, response.text
    assert "another site" in error_body(response)["detail"]
    assert await shared_db.fetchval("SELECT count(*) FROM jobs") == jobs_before
    # Answered through request telemetry and the app's hooks, as every refusal is.
    assert response.headers["x-request-id"]
    assert response.headers["x-content-type-options"] == "nosniff"
    line = next(e for e in logs if e["event"] == "request" and e["path"] == "/jobs")
    assert line["status"] == 403


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-browser-headers"),  # curl, the Python client, workers
        pytest.param({"Sec-Fetch-Site": "same-origin", "Origin": LOCAL_BASE_URL}, id="same-origin"),
        pytest.param({"Sec-Fetch-Site": "same-origin"}, id="same-origin-without-origin"),
        pytest.param({"Sec-Fetch-Site": "none"}, id="user-typed"),
        pytest.param({"Origin": LOCAL_BASE_URL}, id="own-origin-plain-http"),
        # Behind a proxy that ends TLS the API sees http; the host is what makes the origin.
        pytest.param({"Origin": "https://127.0.0.1:8080"}, id="own-host-other-scheme"),
        pytest.param({"Origin": "HTTP://127.0.0.1:8080"}, id="own-origin-uppercase"),
    ],
)
async def test_same_origin_and_non_browser_requests_still_change_state(
    open_client: ApiClient, headers: dict[str, str]
) -> None:
    response = await open_client.post("/v1/jobs", json=JOB, headers=headers)

    assert response.status_code == 201, response.text


async def test_with_an_uppercase_host_the_own_origin_is_still_same_origin(
    make_client: ClientFactory, shared_db_url: str
) -> None:
    async with make_client(shared_db_url, key=None, auth="off", base_url=LOCAL_BASE_URL) as client:
        response = await client.post(
            "/jobs", json=JOB, headers={"Host": "LOCALHOST:8080", "Origin": "http://localhost:8080"}
        )

    assert response.status_code == 201, response.text


async def test_safe_methods_from_another_site_are_not_refused(open_client: ApiClient) -> None:
    # Reading is not the browser's to stop here: without CORS headers the page cannot read the
    # answer, and GET changes nothing.
    headers = {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}
    assert (await open_client.get("/v1/jobs", headers=headers)).status_code == 200
    assert (await open_client.head("/health", headers=headers)).status_code in {200, 405}


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Origin": CORS_ORIGIN, "Sec-Fetch-Site": "cross-site"}, id="cross-site"),
        pytest.param({"Origin": CORS_ORIGIN}, id="origin-only"),
    ],
)
async def test_a_configured_cors_origin_may_still_change_state(
    make_client: ClientFactory, shared_db_url: str, headers: dict[str, str]
) -> None:
    async with make_client(shared_db_url, cors_allow_origins=(CORS_ORIGIN,)) as client:
        allowed = await client.post("/v1/jobs", json=JOB, headers=headers)
        other = await client.post(
            "/v1/jobs", json=JOB, headers={**headers, "Origin": "https://other.example"}
        )

    assert allowed.status_code == 201, allowed.text
    assert allowed.headers["access-control-allow-origin"] == CORS_ORIGIN
    assert other.status_code == 403, other.text


# -- the Host: DNS rebinding --------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "localhost:8080",
        "LOCALHOST:8080",
        "localhost.:8080",
        "app.localhost:8080",
        "127.0.0.1",
        "127.0.0.1:8080",
        "10.1.2.3:8080",  # a Kubernetes probe: the pod's IP
        "[::1]",
        "[::1]:8080",
        "[fd00::1]:8080",
    ],
)
async def test_with_auth_off_loopback_names_and_ip_literals_are_served(
    open_client: ApiClient, host: str
) -> None:
    response = await open_client.get("/v1/jobs", headers={"Host": host})

    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:8080",
        "localhost.evil.example:8080",  # rebinding needs a name the attacker's DNS answers
        "127.0.0.1.evil.example",
        "api:8080",
        "localhost:8080:8080",
        "localhost:http",
        "[::1",
        "[::1]x",
        "[not-an-ip]:8080",
        "",
    ],
)
@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/jobs"), ("POST", "/jobs")])
async def test_with_auth_off_other_hosts_are_refused_even_to_read(
    open_client: ApiClient, shared_db: asyncpg.Connection, host: str, method: str, path: str
) -> None:
    jobs_before = await shared_db.fetchval("SELECT count(*) FROM jobs")

    response = await _request(open_client, method, path, JOB, [("host", host)])

    assert response.status_code == 403, response.text
    assert "API_ALLOWED_HOSTS" in error_body(response)["detail"]
    assert await shared_db.fetchval("SELECT count(*) FROM jobs") == jobs_before


@pytest.mark.parametrize("path", ["/health", "/ready", "/metrics"])
async def test_with_auth_off_probes_and_scrapes_are_served_to_any_host(
    open_client: ApiClient, path: str
) -> None:
    # Prometheus scrapes the API by its service name in compose (api:8080), which no
    # allow-list names by default: refused, the dashboards of a deployment with auth off
    # went blank.
    response = await open_client.get(path, headers={"Host": "api:8080"})

    assert response.status_code == 200, response.text


async def test_with_auth_off_the_console_is_not_served_to_another_host(
    open_client: ApiClient,
) -> None:
    refused = await open_client.get("/ui/login", headers={"Host": "evil.example:8080"})
    served = await open_client.get("/ui/login")

    assert refused.status_code == 403
    assert served.status_code == 200


async def test_allowed_hosts_add_names_and_keep_loopback(
    make_client: ClientFactory, shared_db_url: str
) -> None:
    async with make_client(
        shared_db_url,
        key=None,
        auth="off",
        allowed_hosts=("queue.internal", "Queue-API"),
        base_url="http://queue.internal",
    ) as client:
        statuses = {
            host: (await client.get("/v1/jobs", headers={"Host": host})).status_code
            for host in ("queue.internal", "QUEUE.internal:8080", "queue-api:8080",
                         "localhost:8080", "10.0.0.7", "evil.example")
        }  # fmt: skip

    assert statuses == {
        "queue.internal": 200,
        "QUEUE.internal:8080": 200,
        "queue-api:8080": 200,
        "localhost:8080": 200,
        "10.0.0.7": 200,
        "evil.example": 403,
    }


async def test_with_auth_on_any_host_is_served_unless_allowed_hosts_says(
    make_client: ClientFactory, shared_db_url: str
) -> None:
    async with make_client(shared_db_url) as default:
        any_host = await default.get("/v1/jobs", headers={"Host": "evil.example"})
    async with make_client(shared_db_url, allowed_hosts=("queue.example.com",)) as configured:
        listed = await configured.get("/v1/jobs", headers={"Host": "queue.example.com"})
        other = await configured.get("/v1/jobs", headers={"Host": "evil.example"})

    assert any_host.status_code == 200
    assert listed.status_code == 200
    assert other.status_code == 403


async def test_allowed_hosts_star_serves_any_host(
    make_client: ClientFactory, shared_db_url: str
) -> None:
    async with make_client(shared_db_url, key=None, auth="off", allowed_hosts=("*",)) as client:
        response = await client.get("/v1/jobs", headers={"Host": "anything.example"})

    assert response.status_code == 200


@pytest.mark.parametrize(
    "value", ["http://queue.example.com", "queue.example.com:8080", "a/b", "two words", "*.x"]
)
def test_allowed_hosts_takes_bare_host_names_only(value: str) -> None:
    with pytest.raises(ValidationError, match="allowed_hosts"):
        ApiSettings(DATABASE_URL="postgresql://x/y", allowed_hosts=value)


def test_allowed_hosts_are_lower_cased_and_empty_entries_dropped() -> None:
    settings = ApiSettings(DATABASE_URL="postgresql://x/y", allowed_hosts=" Queue-API, ,[::1],*")

    assert settings.allowed_hosts == ("queue-api", "[::1]", "*")


async def test_with_auth_off_the_start_log_says_which_hosts_are_served(
    make_client: ClientFactory, shared_db_url: str, logs: list[EventDict]
) -> None:
    async with make_client(shared_db_url, key=None, auth="off", base_url=LOCAL_BASE_URL):
        pass

    started = next(e for e in logs if e["event"] == "api_hosts_served")
    assert "localhost" in started["hosts"]
    assert "IP" in started["detail"]


# -- a real server: headers as httptools hands them over -----------------------------------------


def test_the_real_server_refuses_cross_site_and_foreign_hosts(
    tmp_path_factory: pytest.TempPathFactory, shared_db_url: str
) -> None:
    stack = Stack(tmp_path_factory.mktemp("api-browser"))
    api = stack.spawn_api(shared_db_url, env={"API_AUTH": "off"})
    try:
        stack.wait_ready(api)
        port = api.base_url.rsplit(":", 1)[1]
        with httpx.Client(base_url=api.base_url, timeout=5) as client:
            plain = client.post("/v1/jobs", json=JOB)
            two_origins = client.post(
                "/v1/jobs",
                json=JOB,
                headers=[("origin", f"http://127.0.0.1:{port}"), ("origin", EVIL)],
            )
            rebound = client.get("/v1/jobs", headers={"Host": f"evil.example:{port}"})
            ipv6 = client.get("/v1/jobs", headers={"Host": f"[::1]:{port}"})
            upper = client.get("/v1/jobs", headers={"Host": f"LOCALHOST:{port}"})
    finally:
        stack.stop_all()

    assert plain.status_code == 201, plain.text
    assert two_origins.status_code == 403, two_origins.text
    assert "Origin" in error_body(two_origins)["detail"]
    assert rebound.status_code == 403, rebound.text
    assert ipv6.status_code == 200, ipv6.text
    assert upper.status_code == 200, upper.text
