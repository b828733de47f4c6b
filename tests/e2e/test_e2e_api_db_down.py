"""The API process starts without its database and says so, instead of crash-looping."""

import pytest

from e2e.stack import SEED_SEND_EMAIL, Stack, closed_port_url

pytestmark = pytest.mark.e2e


def test_api_starts_with_the_database_unreachable_and_answers_503(stack: Stack) -> None:
    api = stack.start_api(closed_port_url(), probe="/health")  # waits for /health 200

    with api.client() as client:
        health = client.get("/health")
        ready = client.get("/ready")
        created = client.post("/jobs", json=dict(SEED_SEND_EMAIL))
        status = client.get("/jobs/status", params={"id": "a1b2c3d4-e5f6-7890-1234-567890abcdef"})

    logs = stack.logs()
    assert (health.status_code, health.json()) == (200, {"message": "ok"}), logs
    assert ready.status_code == 503, f"{ready.status_code} {ready.text}\n{logs}"
    assert created.status_code == 503, f"{created.status_code} {created.text}\n{logs}"
    assert created.headers["content-type"].startswith("application/json"), logs
    body = created.json()
    assert body["status_code"] == 503, body
    assert "database unavailable" in body["detail"], body
    assert "Traceback" not in created.text, created.text
    assert status.status_code == 503, f"{status.status_code} {status.text}\n{logs}"
    assert api.proc.popen.poll() is None, f"queue-api exited\n{logs}"
