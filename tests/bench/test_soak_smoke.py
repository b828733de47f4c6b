"""The soak must keep working: a run of a quarter of a minute, a row every 5 seconds."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


def test_soak_prints_its_rows_and_writes_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    result = subprocess.run(
        [sys.executable, str(SOAK), "--minutes", "0.25", "--report-seconds", "5",
         "--warmup-seconds", "10", "--workers", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=110, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| minute | enqueued/s |" in result.stdout
    assert "verdict: " in result.stdout
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert len(rows) >= 2
    # Figures are reported, not judged; they must only be real measurements.
    assert all(row["enqueued_per_s"] > 0 and row["total_mb"] > 0 for row in rows)
    assert sum(row["completed_per_s"] for row in rows) > 0
    assert "pk_jobs" in rows[-1]["index_mb"]
    assert rows[-1]["latency_p50_ms"] is not None
    # Too short for retention to catch up: no verdict, and it says so.
    assert report["verdict"]["flat"] is None
