"""The benchmark must keep working: its smoke mode runs every workload of ours, tiny."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench.py"


def test_bench_smoke_runs_every_workload_and_writes_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    result = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["results"]) == {
        "http_single",
        "http_batch",
        "python_bulk",
        "process_1_proc",
        "process_2_procs",
        "process_keys_1_proc",
        "process_keys_2_procs",
        "latency",
        "history",
        "mixed",
        "lone_caller",
    }
    # Figures are reported, not judged; they must only be real measurements.
    assert report["results"]["process_2_procs"]["jobs_per_s"] > 0
    assert report["results"]["latency"]["jobs"] == 20
    assert report["results"]["http_single"]["errors"] == 0
    mixed = report["results"]["mixed"]
    assert mixed["completed"] == mixed["enqueued"] > 0
    assert mixed["single"]["errors"] == 0
    assert mixed["single"]["jobs"] > 0
    assert mixed["batch"]["jobs"] > 0
    lone = report["results"]["lone_caller"]
    assert lone["calls"] == 300
    assert lone["python_statement_alone"]["p50_ms"] > 0
    if lone["http_wrk_one_connection"] is not None:  # wrk installed: the HTTP floor beside it
        health = lone["http_health_wrk_one_connection"]
        assert health["requests"] > 0
        assert health["errors"] == 0
