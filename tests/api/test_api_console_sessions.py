"""The web console's sessions, in-process (tests/ui drives the pages in a real browser): a
session only from the sign-in form, its cookie's attributes, the key checked on every request,
no session from a Bearer key, and nothing of /ui in the OpenAPI document."""

import re

import asyncpg

from api.support import LOCAL_BASE_URL, ApiClient, ClientFactory, bearer
from queue_api.ui.sessions import SESSION_COOKIE
from queue_core.bulk import MAX_BULK_SCAN

DOMAIN = "testserver.local"  # AsyncTestClient's host
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


async def sign_in(client: ApiClient, key: str | None) -> None:
    form = await client.get("/ui/login")
    assert form.status_code == 200
    match = _TOKEN.search(form.text)
    assert match, form.text
    fields = {"csrf_token": match.group(1)} | ({} if key is None else {"key": key})
    answer = await client.post("/ui/login", data=fields, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/ui/"


async def test_the_console_wants_a_session_and_a_bearer_key_is_not_one(
    make_client: ClientFactory, db_url: str
) -> None:
    async with make_client(db_url) as client:  # sends the admin key as a Bearer header
        page = await client.get("/ui/", follow_redirects=False)
        assert page.status_code == 303
        assert page.headers["location"] == "/ui/login"
        fragment = await client.get("/ui/fragments/jobs", headers={"HX-Request": "true"})
        assert fragment.status_code == 401
        assert fragment.headers["hx-redirect"] == "/ui/login"


async def test_a_session_cookie_is_httponly_strict_and_for_ui_only(
    make_client: ClientFactory, db_url: str, admin_key: str
) -> None:
    async with make_client(db_url, key=None) as client:
        form = await client.get("/ui/login")
        match = _TOKEN.search(form.text)
        assert match
        answer = await client.post(
            "/ui/login",
            data={"csrf_token": match.group(1), "key": admin_key},
            follow_redirects=False,
        )
        cookie = next(
            value
            for name, value in answer.headers.multi_items()
            if name == "set-cookie" and value.startswith(SESSION_COOKIE + "=")
        )
        attributes = {part.strip().lower() for part in cookie.split(";")}
        assert {"httponly", "samesite=strict", "path=/ui"} <= attributes
        assert "secure" not in attributes  # plain http here; https requests get Secure
        assert admin_key not in cookie
        assert (await client.get("/ui/")).status_code == 200
        # The JSON API takes no cookie: still 401 without a Bearer key.
        assert (await client.get("/v1/jobs")).status_code == 401


async def test_behind_a_proxy_that_ends_tls_the_cookies_can_always_be_secure(
    make_client: ClientFactory, db_url: str, admin_key: str
) -> None:
    """An ingress that uvicorn does not trust for X-Forwarded-Proto: the request looks like
    plain http, and only the setting marks the cookies Secure."""
    async with make_client(db_url, key=None, ui_cookies_always_secure=True) as client:
        form = await client.get("/ui/login")
        login_cookie = form.headers["set-cookie"]
        assert "secure" in {part.strip().lower() for part in login_cookie.split(";")}
        match = _TOKEN.search(form.text)
        assert match
        # Sent by hand: the client keeps Secure cookies for https.
        answer = await client.post(
            "/ui/login",
            data={"csrf_token": match.group(1), "key": admin_key},
            headers={"cookie": login_cookie.partition(";")[0]},
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text
        cookies = answer.headers.get_list("set-cookie")
        assert len(cookies) == 2, cookies  # the session, and the used sign-in cookie cleared
        for cookie in cookies:
            assert "secure" in {part.strip().lower() for part in cookie.split(";")}, cookie


async def test_a_session_ends_when_its_key_is_revoked_or_its_cookie_is_touched(
    make_client: ClientFactory, db_url: str, admin_key: str
) -> None:
    async with make_client(db_url, key=None, auth_cache_s=0) as client:
        made = await client.post(
            "/v1/keys", json={"name": "console", "scopes": ["jobs:read"]}, headers=bearer(admin_key)
        )
        assert made.status_code == 201, made.text
        await sign_in(client, made.json()["key"])
        assert (await client.get("/ui/jobs")).status_code == 200

        value = client.cookies[SESSION_COOKIE]
        body, _, mac = value.partition(".")
        for forged in (f"{body}.{mac[::-1]}", f"{body[:-1]}A.{mac}", "garbage"):
            client.cookies.set(SESSION_COOKIE, forged, domain=DOMAIN, path="/ui")
            assert (await client.get("/ui/jobs", follow_redirects=False)).status_code == 303
        client.cookies.set(SESSION_COOKIE, value, domain=DOMAIN, path="/ui")
        assert (await client.get("/ui/jobs")).status_code == 200

        revoked = await client.post("/v1/keys/console/revoke", headers=bearer(admin_key))
        assert revoked.status_code == 200
        page = await client.get("/ui/jobs", follow_redirects=False)
        assert page.status_code == 303
        assert page.headers["location"] == "/ui/login"


async def test_signing_out_ends_the_session_not_only_the_browsers_cookie(
    make_client: ClientFactory, db_url: str, admin_key: str
) -> None:
    async with make_client(db_url, key=None) as client, make_client(db_url, key=None) as other:
        await sign_in(client, admin_key)
        await sign_in(other, admin_key)  # the same key, another browser
        page = await client.get("/ui/jobs")
        token = _TOKEN.search(page.text)
        assert token, page.text
        copy = client.cookies[SESSION_COOKIE]

        answer = await client.post(
            "/ui/logout", data={"csrf_token": token.group(1)}, follow_redirects=False
        )
        assert answer.status_code == 303, answer.text
        assert SESSION_COOKIE not in client.cookies

        # The copy, CSRF token and all, is refused: pages, fragments and actions.
        client.cookies.set(SESSION_COOKIE, copy, domain=DOMAIN, path="/ui")
        page = await client.get("/ui/jobs", follow_redirects=False)
        assert page.status_code == 303
        assert page.headers["location"] == "/ui/login"
        fragment = await client.get("/ui/fragments/jobs", headers={"HX-Request": "true"})
        assert fragment.status_code == 401
        action = await client.post(
            "/ui/queues/pause",
            data={"csrf_token": token.group(1), "name": "default"},
            follow_redirects=False,
        )
        assert action.status_code in {303, 401}, action.text
        queues = await client.get("/v1/queues", headers=bearer(admin_key))
        assert queues.status_code == 200, queues.text
        assert not [q for q in queues.json()["queues"] if q.get("paused")], queues.text

        # Signing out of one session leaves the key's others alone.
        assert (await other.get("/ui/jobs")).status_code == 200


async def test_with_auth_off_the_console_signs_in_without_a_key(
    make_client: ClientFactory, db_url: str
) -> None:
    async with make_client(db_url, key=None, auth="off", base_url=LOCAL_BASE_URL) as client:
        form = await client.get("/ui/login")
        assert 'name="key"' not in form.text
        await sign_in(client, None)
        overview = await client.get("/ui/")
        assert overview.status_code == 200
        assert "Authentication off" in overview.text


async def test_the_console_stays_out_of_the_openapi_document(shared_client: ApiClient) -> None:
    document = (await shared_client.get("/schema/openapi.json")).json()
    assert not [path for path in document["paths"] if path.startswith("/ui")]


async def test_a_job_page_shows_its_concurrency_key_and_what_it_waits_for(
    make_client: ClientFactory, db_url: str, admin_key: str
) -> None:
    async with make_client(db_url, key=None) as client:
        job = {"type": "noop", "payload": {"n": 1}}
        parent = await client.post("/v1/jobs", json=job, headers=bearer(admin_key))
        assert parent.status_code == 201, parent.text
        parent_id = parent.json()["id"]
        child = await client.post(
            "/v1/jobs",
            json={**job, "depends_on": [parent_id], "concurrency_key": "customer:42"},
            headers=bearer(admin_key),
        )
        assert child.status_code == 201, child.text
        await sign_in(client, admin_key)

        page = await client.get(f"/ui/jobs/{child.json()['id']}")

        assert page.status_code == 200
        assert "<code>customer:42</code>" in page.text
        assert "waiting for 1 of 1" in page.text
        assert f'href="/ui/jobs/{parent_id}"' in page.text


async def test_hostile_console_forms_get_a_4xx_not_a_500(
    make_client: ClientFactory, db_url: str, admin_key: str
) -> None:
    """Multipart bodies (a part that is not UTF-8 failed the form parser, a file part is no
    field's value) and digits that only Unicode calls digits."""
    bad_part = (
        b'--XX\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
        b"\xed\xb3\xbf\r\n--XX--\r\n"
    )
    multipart = {"content-type": "multipart/form-data; boundary=XX"}
    async with make_client(db_url, key=None) as client:
        # Before any sign-in form was served: refused without reading the body.
        answer = await client.post("/ui/login", content=bad_part, headers=multipart)
        assert answer.status_code == 403, answer.text
        form = await client.get("/ui/login")  # the sign-in form's own cookie
        answer = await client.post("/ui/login", content=bad_part, headers=multipart)
        assert answer.status_code == 415, answer.text
        # Media types are case-insensitive, and the token may come in the header instead.
        login_token = _TOKEN.search(form.text)
        assert login_token, form.text
        answer = await client.post(
            "/ui/login",
            content=bad_part,
            headers={
                "content-type": "Multipart/Form-Data; boundary=XX",
                "x-csrf-token": login_token.group(1),
            },
        )
        assert answer.status_code == 415, answer.text

        await sign_in(client, admin_key)
        page = await client.get("/ui/jobs")
        token = _TOKEN.search(page.text)
        assert token, page.text
        csrf = token.group(1)
        answer = await client.post(
            "/ui/bulk",
            data={"csrf_token": csrf, "action": "retry", "limit": "1"},
            files={"type": ("t.txt", b"noop")},
        )
        assert answer.status_code == 415, answer.text
        for limit in ("²", "١٢", "0", "x"):
            answer = await client.post(
                "/ui/bulk",
                data={"csrf_token": csrf, "action": "retry", "limit": limit},
                follow_redirects=False,
            )
            assert answer.status_code == 400, (limit, answer.text)
            assert "the limit must be" in answer.text
        answer = await client.post(
            "/ui/bulk",
            data={"csrf_token": csrf, "action": "retry", "limit": "12"},
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text


async def test_a_bulk_action_that_stopped_at_its_bound_says_so_in_its_notice(
    make_client: ClientFactory, db_url: str, admin_key: str, db: asyncpg.Connection
) -> None:
    # More jobs than one action reads, none of them matching: pressing the button again would
    # walk the same ones, so the notice must say how to reach the older jobs.
    await db.execute(
        "INSERT INTO jobs (id, type, payload, status, attempts, started_at, finished_at)"
        " SELECT gen_random_uuid(), 'noop', '{}'::jsonb, 'cancelled', 1, now(), now()"
        " FROM generate_series(1, $1)",
        MAX_BULK_SCAN + 10,
    )
    async with make_client(db_url, key=None) as client:
        await sign_in(client, admin_key)
        token = _TOKEN.search((await client.get("/ui/jobs")).text)
        assert token
        for action in ("retry", "cancel"):
            answer = await client.post(
                "/ui/bulk",
                data={"csrf_token": token.group(1), "action": action, "limit": "5", "type": "x"},
            )
            assert answer.status_code == 200, answer.text
            assert f"Done: {action}:0 (stopped after reading {MAX_BULK_SCAN:,} jobs" in answer.text


async def test_a_notice_shows_only_what_this_session_did_not_words_from_a_link(
    make_client: ClientFactory, db_url: str, admin_key: str
) -> None:
    # The notice ("Done: ...") came from the URL: a link from anywhere put any words in the
    # console, in its own voice ("Done: your session expired, sign in again at ...").
    spoof = "your session expired, sign in again at evil.example"
    async with make_client(db_url, key=None) as client:
        await sign_in(client, admin_key)
        for path in ("/ui/", "/ui/jobs"):
            page = await client.get(path, params={"done": spoof})
            assert page.status_code == 200, page.text
            assert "evil.example" not in page.text
            assert "Done:" not in page.text
        token = _TOKEN.search((await client.get("/ui/")).text)
        assert token
        answer = await client.post(
            "/ui/queues/pause", data={"csrf_token": token.group(1), "name": "default"}
        )
        assert answer.status_code == 200, answer.text
        assert "Done: paused:default" in answer.text
        # The same link, in another session, shows nothing.
        link = str(answer.url)
        await client.post("/ui/logout", data={"csrf_token": token.group(1)})
        await sign_in(client, admin_key)
        again = await client.get(link)
        assert again.status_code == 200, again.text
        assert "Done:" not in again.text
