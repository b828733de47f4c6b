"""API keys black-box: keys made and revoked by the real ``queue-keys`` command, used against a
real ``queue-api`` process; a revocation reaches it within API_AUTH_CACHE_S; no secret appears
in any process's output or in the database in clear; a key's rate limit holds across two API
processes."""

import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from e2e.stack import COMMON_ENV, Stack, fetch

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
CACHE_S = 0.5


def queue_keys(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **COMMON_ENV, "DATABASE_URL": database_url}
    return subprocess.run(
        [str(BIN / "queue-keys"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_keys_made_by_queue_keys_grant_exactly_their_scopes_and_queues_until_revoked(
    stack: Stack, empty_db_url: str
) -> None:
    stack.migrate(empty_db_url)
    made = queue_keys(
        empty_db_url, "create", "--name", "mailer", "--scopes", "jobs:write,jobs:read",
        "--queues", "emails", "--expires-in-days", "30",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("tq_"), made.stdout
    assert key not in made.stdout.strip().splitlines()[0]  # alone on the last line only

    unknown_scope = queue_keys(empty_db_url, "create", "--name", "x", "--scopes", "jobs:all")
    assert unknown_scope.returncode == 2
    assert "jobs:all" in unknown_scope.stderr
    duplicate = queue_keys(empty_db_url, "create", "--name", "mailer", "--scopes", "jobs:read")
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr
    listed = queue_keys(empty_db_url, "list")
    assert listed.returncode == 0
    assert "mailer" in listed.stdout
    assert key[12:] not in listed.stdout

    api = stack.spawn_api(empty_db_url, env={"API_AUTH_CACHE_S": str(CACHE_S)})
    stack.wait_ready(api)
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=api.base_url, timeout=10) as client:
        job = {"type": "noop", "payload": {"n": 1}, "queue": "emails"}
        created = client.post("/jobs", json=job, headers=auth)
        assert created.status_code == 201, created.text
        location = created.headers["location"]
        assert client.get(location, headers=auth).status_code == 200
        assert (
            client.post("/jobs", json={**job, "queue": "default"}, headers=auth).status_code == 403
        )
        assert client.get("/metrics", headers=auth).status_code == 403
        assert client.get("/v1/keys", headers=auth).status_code == 403
        assert client.post("/jobs", json=job).status_code == 401
        assert client.get("/health").status_code == 200

        revoked = queue_keys(empty_db_url, "revoke", key[:11])
        assert revoked.returncode == 0, revoked.stderr
        stack.wait(
            lambda: client.get(location, headers=auth).status_code == 401,
            what="the revoked key refused",
            timeout_s=CACHE_S + 5,
        )
        assert "revoked" in client.get(location, headers=auth).json()["detail"]

    secret = key.split("_", 2)[2]
    assert secret not in stack.logs()
    dump = fetch(empty_db_url, "SELECT string_agg(t::text, '|') AS all FROM api_keys AS t")
    assert secret not in dump[0]["all"]


RATE = 20.0  # requests a second for the key of the test below
BURST = 10
HAMMER_S = 3.0


def _hammer(base_url: str, key: str, until: float) -> list[httpx.Response]:
    """GET a status (404: no such job, but the request counts) as fast as one client can."""
    answers = []
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base_url, timeout=10, headers=auth) as client:
        while time.monotonic() < until:
            answers.append(client.get(f"/jobs/status?id={uuid.uuid4()}"))
    return answers


def test_a_keys_rate_limit_holds_across_two_api_replicas_and_is_lifted_by_queue_keys(
    stack: Stack, empty_db_url: str
) -> None:
    stack.migrate(empty_db_url)
    made = queue_keys(
        empty_db_url, "create", "--name", "chatty", "--scopes", "jobs:read",
        "--requests-per-s", str(RATE), "--requests-burst", str(BURST),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert "requests=20/s(burst 10)" in queue_keys(empty_db_url, "list").stdout
    bad = queue_keys(empty_db_url, "limits", "chatty", "--requests-burst", "5")
    assert bad.returncode == 2
    assert "burst needs a rate" in bad.stderr

    env = {"API_AUTH_CACHE_S": str(CACHE_S)}
    apis = [stack.spawn_api(empty_db_url, env=env), stack.spawn_api(empty_db_url, env=env)]
    stack.wait_ready(*apis)

    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        runs = [pool.submit(_hammer, api.base_url, key, started + HAMMER_S) for api in apis * 2]
        answers = [answer for run in runs for answer in run.result()]
    elapsed = time.monotonic() - started

    admitted = [a for a in answers if a.status_code == 404]
    refused = [a for a in answers if a.status_code == 429]
    assert len(admitted) + len(refused) == len(answers), {a.status_code for a in answers}
    # The documented bound: burst + rate x (T + the 1 s lease), whatever the replicas.
    assert len(admitted) <= BURST + RATE * (elapsed + 1.0), (len(admitted), elapsed)
    # And the key is not starved: most of its rate gets through.
    assert len(admitted) >= RATE * HAMMER_S * 0.6, (len(admitted), len(refused))
    assert refused, "four clients at full speed never hit a limit of 20/s"
    retry_after = int(refused[0].headers["retry-after"])
    assert retry_after >= 1
    assert "20/s" in refused[0].json()["detail"]
    for api in apis:
        with api.client() as admin:  # the admin key: metrics:read
            page = admin.get("/metrics").text
        assert 'queue_api_rate_limited_total{key="chatty",limit="requests"}' in page

    lifted = queue_keys(empty_db_url, "limits", "chatty")
    assert lifted.returncode == 0, lifted.stderr
    assert "chatty" in lifted.stdout
    time.sleep(CACHE_S + 0.5)
    again = _hammer(apis[0].base_url, key, time.monotonic() + 1.0)
    assert {a.status_code for a in again} == {404}, len(again)
