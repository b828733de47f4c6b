"""A logged traceback never shows frame locals, in any format: they hold request bodies and
payloads, which must never reach a log."""

import subprocess
import sys

import pytest

PRIVATE_VALUE = "recipient-4f1c@example.com"

# A process of its own: configure() sets up the root logger and structlog for good.
PROGRAM = f"""
import sys
from queue_core.log import configure, get_logger

configure(level="DEBUG", fmt=sys.argv[1])
log = get_logger("test")

def handle(payload):
    secret = payload["recipient"]
    raise RuntimeError("handler failed")

try:
    handle({{"recipient": "{PRIVATE_VALUE}"}})
except RuntimeError:
    log.exception("job_crashed")
"""


@pytest.mark.parametrize("fmt", ["console", "json", "auto"])
def test_tracebacks_carry_no_frame_locals(fmt: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, fmt], capture_output=True, text=True, check=True, timeout=30
    )
    output = out.stdout + out.stderr
    assert "job_crashed" in output
    assert "handler failed" in output  # the traceback is there...
    assert "handle" in output
    assert PRIVATE_VALUE not in output  # ...without the values of its frames' variables
