"""The web console in a real browser against a real system: pages, filters, actions, scopes,
CSRF, sign-out, keyboard use and phone width.

Every wait is Playwright's (an element or text to appear, with a deadline) or the stack's
polling; nothing is timed. ``UI_SCREENSHOTS_DIR`` set (``make screenshots``): the main pages'
screenshots are written there too.
"""

import os
import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from playwright.sync_api import Dialog, Page, expect

from e2e.stack import Stack, fetch
from queue_core.keys import Scope
from ui.conftest import PHONE, Console, create_key

SHOTS_ENV = "UI_SCREENSHOTS_DIR"


# -- helpers -----------------------------------------------------------------------------------


def api_client(console: Console) -> httpx.Client:
    return httpx.Client(
        base_url=console.api.base_url,
        timeout=10.0,
        headers={"Authorization": f"Bearer {console.admin_key}"},
    )


def enqueue(console: Console, job_type: str, **fields: Any) -> uuid.UUID:
    with api_client(console) as client:
        body = {"type": job_type, "payload": fields.pop("payload", {"from": "ui-test"}), **fields}
        response = client.post("/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


def status_of(console: Console, job_id: uuid.UUID) -> str:
    rows = fetch(console.database_url, f"SELECT status FROM jobs WHERE id = '{job_id}'")
    return str(rows[0]["status"])


def wait_status(stack: Stack, console: Console, job_id: uuid.UUID, status: str) -> None:
    stack.wait(
        lambda: status_of(console, job_id) == status,
        what=f"job {job_id} {status}",
        detail=lambda: status_of(console, job_id),
    )


def sign_in(page: Page, console: Console, key: str) -> None:
    page.goto(console.url)
    expect(page).to_have_url(re.compile(r"/ui/login$"))  # not signed in: to the sign-in page
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()


def failed_job(stack: Stack, console: Console, message: str = "boom") -> uuid.UUID:
    job_id = enqueue(console, "fail", payload={"message": message}, max_attempts=2)
    wait_status(stack, console, job_id, "failed")
    return job_id


def shoot(page: Page, name: str, tmp_path: Path) -> None:
    """A full-page screenshot into the test's directory, and into UI_SCREENSHOTS_DIR if set."""
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    target = os.environ.get(SHOTS_ENV)
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / f"{name}.png"), full_page=True)


def unlabelled_controls(page: Page) -> list[str]:
    """Form controls a screen reader could not name."""
    result: list[str] = page.evaluate(
        """() => [...document.querySelectorAll(
                'input:not([type=hidden]), select, textarea, button')]
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                          && !(el.tagName === 'BUTTON' && el.textContent.trim()))
            .map(el => el.outerHTML)"""
    )
    return result


def wider_than_screen(page: Page) -> bool:
    """Whether the page scrolls sideways as a whole (wide tables scroll in their own box)."""
    return bool(page.evaluate("() => document.documentElement.scrollWidth > window.innerWidth + 1"))


# -- tests -------------------------------------------------------------------------------------


def test_every_page_renders_and_the_filters_work(
    stack: Stack, console: Console, page: Page, tmp_path: Path
) -> None:
    done = [enqueue(console, "noop", payload={"n": n}) for n in range(3)]
    other = enqueue(console, "noop", queue="other", payload={"where": "other"})
    failed = failed_job(stack, console, "the mail server said no")
    for job_id in [*done, other]:
        wait_status(stack, console, job_id, "completed")
    sign_in(page, console, console.admin_key)

    # Overview: queues with depth and rates, workers, schedules; landmarks and labels.
    queues = page.get_by_role("region", name="Queues")
    expect(queues.get_by_role("rowheader", name="default")).to_be_visible()
    expect(queues.get_by_role("rowheader", name="other")).to_be_visible()
    expect(queues.get_by_role("button", name="Pause queue default")).to_be_visible()
    expect(page.get_by_role("region", name="Workers").get_by_role("rowheader")).to_have_count(1)
    expect(page.get_by_role("region", name="Schedules")).to_be_visible()
    for landmark in ("banner", "navigation", "main", "contentinfo"):
        expect(page.get_by_role(landmark).first).to_be_visible()
    assert unlabelled_controls(page) == []
    shoot(page, "overview", tmp_path)

    # Jobs: all five, then by status, type and queue.
    page.get_by_role("link", name="Jobs", exact=True).click()
    expect(page.get_by_role("heading", name="Jobs", level=1)).to_be_visible()
    rows = page.locator("table.jobs tbody tr")
    expect(rows).to_have_count(5)
    assert unlabelled_controls(page) == []
    shoot(page, "jobs", tmp_path)

    page.get_by_role("checkbox", name="failed").check()
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"status=failed"))
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("the mail server said no")

    page.goto(console.api.base_url + "/ui/jobs")
    page.get_by_label("Queue").fill("other")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(str(other)[:8])

    page.goto(console.api.base_url + "/ui/jobs?type=noop")
    expect(rows).to_have_count(4)

    # A bad filter is a clear 400 page, not a crash.
    page.goto(console.api.base_url + "/ui/jobs?created_after=yesterday")
    expect(page.get_by_role("heading", name=re.compile("Cannot do that"))).to_be_visible()

    # Job detail: payload pretty-printed, errors of every attempt, the timeline.
    page.goto(console.api.base_url + f"/ui/jobs/{failed}")
    expect(page.locator("#job-status")).to_have_text("failed")
    errors = page.get_by_role("region", name=re.compile(r"Errors \(2\)"))
    expect(errors.get_by_role("listitem")).to_have_count(2)
    expect(errors).to_contain_text("the mail server said no")
    expect(page.get_by_role("region", name="Payload")).to_contain_text(
        '"message": "the mail server said no"'
    )
    timeline = page.get_by_role("region", name="Timeline")
    for moment in ("Created", "Started", "Finished"):
        expect(timeline).to_contain_text(moment)
    shoot(page, "job", tmp_path)

    page.goto(console.api.base_url + f"/ui/jobs/{done[0]}")
    expect(page.get_by_role("region", name="Result")).to_contain_text("null")
    page.goto(console.api.base_url + f"/ui/jobs/{uuid.uuid4()}")
    expect(page.get_by_role("heading", name=re.compile("Not found"))).to_be_visible()


def test_the_jobs_list_updates_itself_while_visible(
    stack: Stack, console: Console, page: Page
) -> None:
    sign_in(page, console, console.admin_key)
    page.goto(console.api.base_url + "/ui/jobs?queue=other")
    expect(page.locator("table.jobs")).to_contain_text("No job on this page matches")

    job_id = enqueue(console, "noop", queue="other")
    wait_status(stack, console, job_id, "completed")

    # No reload: the polled fragment brings it in, with its final status.
    row = page.locator("table.jobs tbody tr", has_text=str(job_id)[:8])
    expect(row).to_contain_text("completed")


def test_a_retry_button_turns_a_failed_job_pending(
    stack: Stack, console: Console, page: Page
) -> None:
    job_id = failed_job(stack, console)
    # Paused: the retried job stays pending to be seen.
    with stack.pausing(console.worker, "default"), api_client(console) as client:
        assert client.post("/v1/queues/default/pause").status_code == 200
    sign_in(page, console, console.admin_key)
    page.goto(console.api.base_url + f"/ui/jobs/{job_id}")
    expect(page.locator("#job-status")).to_have_text("failed")

    retry = page.get_by_role("button", name="Retry")
    retry.focus()  # by keyboard, as an operator without a mouse would
    page.keyboard.press("Enter")

    expect(page.get_by_role("status")).to_contain_text("retried")
    expect(page.locator("#job-status")).to_have_text("pending")
    assert status_of(console, job_id) == "pending"
    expect(page.get_by_role("button", name="Cancel")).to_be_visible()

    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#job-status")).to_have_text("cancelled")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("heading", name="Jobs", level=1)).to_be_visible()
    assert fetch(console.database_url, f"SELECT id FROM jobs WHERE id = '{job_id}'") == []


def test_a_bulk_retry_of_a_filter_asks_first_then_retries_every_match(
    stack: Stack, console: Console, page: Page
) -> None:
    failed = [failed_job(stack, console, f"bulk {n}") for n in range(2)]
    with stack.pausing(console.worker, "default"), api_client(console) as client:
        assert client.post("/v1/queues/default/pause").status_code == 200
    sign_in(page, console, console.admin_key)
    page.goto(console.api.base_url + "/ui/jobs?status=failed&type=fail")

    page.get_by_role("link", name="Retry matching…").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Retry every job matching")
    assert all(status_of(console, job_id) == "failed" for job_id in failed)  # nothing yet

    page.get_by_role("button", name="Yes, retry them").click()
    expect(page.get_by_role("status")).to_contain_text("retry:2")
    assert [status_of(console, job_id) for job_id in failed] == ["pending", "pending"]


def test_a_pause_stops_a_queue_until_it_is_resumed(
    stack: Stack, console: Console, page: Page
) -> None:
    sign_in(page, console, console.admin_key)
    with stack.pausing(console.worker, "default"):
        page.get_by_role("button", name="Pause queue default").click()
        expect(page.get_by_role("status")).to_contain_text("paused:default")
    queues = page.get_by_role("region", name="Queues")
    expect(queues.get_by_role("row", name=re.compile("^default")).first).to_contain_text("paused")

    parked = enqueue(console, "noop")
    elsewhere = enqueue(console, "noop", queue="other")
    wait_status(stack, console, elsewhere, "completed")  # the worker claims: from other only
    assert status_of(console, parked) == "pending"

    page.get_by_role("button", name="Resume queue default").click()
    expect(page.get_by_role("status")).to_contain_text("resumed:default")
    wait_status(stack, console, parked, "completed")


def test_a_key_without_the_scope_sees_no_action_and_is_refused(
    stack: Stack, console: Console, page: Page
) -> None:
    job_id = failed_job(stack, console)
    sign_in(page, console, console.reader_key)
    queues = page.get_by_role("region", name="Queues")
    expect(queues.get_by_role("rowheader", name="default")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Pause"))).to_have_count(0)

    page.goto(console.api.base_url + f"/ui/jobs/{job_id}")
    expect(page.locator("#job-status")).to_have_text("failed")
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    page.goto(console.api.base_url + "/ui/jobs")
    expect(page.get_by_role("link", name="Retry matching…")).to_have_count(0)

    # The server refuses what the page hides, even with a good session and CSRF token.
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert token
    for path, form in (
        (f"/ui/jobs/{job_id}/retry", {}),
        ("/ui/queues/pause", {"name": "default"}),
        ("/ui/bulk", {"action": "retry", "limit": "10"}),
    ):
        refused = page.request.post(
            console.api.base_url + path, form={"csrf_token": token, **form}, max_redirects=0
        )
        assert refused.status == 403, (path, refused.status)
        assert "jobs:admin" in refused.text() or "queues:admin" in refused.text()
    assert status_of(console, job_id) == "failed"

    # A key without jobs:read cannot sign in at all.
    nothing = create_key(console.database_url, "ui-writer", (Scope.JOBS_WRITE,))
    page.context.clear_cookies()
    page.goto(console.api.base_url + "/ui/login")
    page.get_by_label("API key").fill(nothing)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("jobs:read")


def test_a_form_without_its_csrf_token_is_refused_and_the_json_api_ignores_the_cookie(
    stack: Stack, console: Console, page: Page
) -> None:
    job_id = failed_job(stack, console)
    sign_in(page, console, console.admin_key)
    cookie = next(c for c in page.context.cookies() if c["name"] == "tq_ui_session")
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/ui"

    url = console.api.base_url + f"/ui/jobs/{job_id}/retry"
    forms: list[dict[str, str | float | bool]] = [{}, {"csrf_token": "forged"}]
    for form in forms:
        refused = page.request.post(url, form=form, max_redirects=0)
        assert refused.status == 403, refused.status
        assert "CSRF" in refused.text()
    assert status_of(console, job_id) == "failed"

    # The session is for /ui only: the JSON API still wants a Bearer key.
    json_api = page.request.post(console.api.base_url + f"/v1/jobs/{job_id}/retry")
    assert json_api.status == 401

    # The sign-in form has its own token too.
    page.context.clear_cookies()
    forged = page.request.post(
        console.api.base_url + "/ui/login", form={"key": console.admin_key}, max_redirects=0
    )
    assert forged.status == 403


def test_signing_out_ends_the_session(console: Console, page: Page) -> None:
    sign_in(page, console, console.admin_key)
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/ui/login$"))
    assert not [c for c in page.context.cookies() if c["name"] == "tq_ui_session"]
    page.goto(console.url)
    expect(page).to_have_url(re.compile(r"/ui/login$"))

    page.goto(console.api.base_url + "/ui/login")
    page.get_by_label("API key").fill("tq_nothing0_" + "x" * 43)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("unknown API key")


def test_the_console_is_keyboard_usable_and_fits_a_phone(
    stack: Stack, console: Console, page: Page, tmp_path: Path
) -> None:
    job_id = failed_job(stack, console)
    sign_in(page, console, console.admin_key)

    page.keyboard.press("Tab")  # the first stop skips the navigation
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()

    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    for path, name in (("/ui/", "overview"), ("/ui/jobs", "jobs"), (f"/ui/jobs/{job_id}", "job")):
        page.goto(console.api.base_url + path)
        expect(page.get_by_role("main")).to_be_visible()
        assert not wider_than_screen(page), path
        shoot(page, f"{name}-phone", tmp_path)


def test_the_api_reference_loads_nothing_from_elsewhere(console: Console, page: Page) -> None:
    # Redoc's bundle names one image on its CDN (its "API docs by Redocly" logo): the pages'
    # policy blocks it, so it is asked for but never loaded. Nothing from elsewhere may load.
    # Each renderer starts from a file of the API's, as their policy allows no inline script.
    requested: list[str] = []
    page.on("requestfinished", lambda request: requested.append(request.url))
    refused: list[str] = []
    page.on("console", lambda message: refused.extend(re.findall(r"Refused .*", message.text)))
    for path in ("/schema", "/schema/swagger"):
        page.goto(console.api.base_url + path)
        page.wait_for_load_state("networkidle")
    expect(page.locator(".swagger-ui")).to_be_visible()
    expect(page.get_by_text("Enqueue a job").first).to_be_visible()
    page.goto(console.api.base_url + "/schema")
    expect(page.get_by_text("Task queue API").first).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile("Enqueue a job$")).first).to_be_visible()
    assert [line for line in refused if "script" in line] == []
    foreign = [  # data: and blob: URLs are made in the page itself
        url
        for url in requested
        if url.startswith(("http:", "https:")) and not url.startswith(console.api.base_url)
    ]
    assert foreign == []


def test_what_clients_and_handlers_wrote_stays_text_on_every_page(
    stack: Stack, console: Console, page: Page
) -> None:
    # Every field a tenant or a handler controls, as markup that would run if it were read as
    # HTML: a dialog, or an element made from it, fails the test.
    hostile = '"><img src=x id=injected onerror=alert(1)><script>alert(2)</script>'
    dialogs: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    queued = enqueue(
        console,
        hostile,
        queue=hostile,
        payload={hostile: hostile},
        concurrency_key=hostile,
        unique_key=hostile,
    )
    failed = failed_job(stack, console, message=hostile)
    sign_in(page, console, console.admin_key)
    for path in (
        "/ui/",
        "/ui/jobs",
        f"/ui/jobs/{queued}",
        f"/ui/jobs/{failed}",
        "/ui/jobs?" + urlencode({"type": hostile, "queue": hostile}),
        "/ui/bulk?" + urlencode({"action": "retry", "type": hostile, "queue": hostile}),
        "/ui/jobs?" + urlencode({"created_after": hostile}),  # an error page naming the field
    ):
        page.goto(console.api.base_url + path)
        page.wait_for_load_state("networkidle")
        assert page.locator("#injected, script:not([src])").count() == 0, path
    page.goto(console.api.base_url + f"/ui/jobs/{queued}")
    expect(page.locator("main")).to_contain_text(hostile)
    assert dialogs == []
