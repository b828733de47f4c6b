"""Figures for the reliability report (docs/reliability.md, written by ``make chaos-report``).

The chaos and recovery tests measure what the report publishes: jobs acknowledged, completed,
lost, run twice, and the time to recover. With ``RELIABILITY_FIGURES_DIR`` set (only
``make chaos-report`` sets it) each scenario writes its figures there as JSON, and
benchmarks/reliability_report.py renders them; otherwise recording does nothing, so the tests
run the same in CI and for the report.
"""

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ENV = "RELIABILITY_FIGURES_DIR"


@dataclass
class Scenario:
    """One scenario's outcome. ``None`` where the scenario does not measure a figure."""

    key: str  # file name and sort key
    title: str
    what: str  # what the scenario does, in a sentence or two
    test: str  # the test that ran it: "path::name"
    acknowledged: int | None = None  # enqueues the system acknowledged (committed, or 2xx)
    completed: int | None = None
    lost: int | None = None  # acknowledged, yet not stored or never run
    run_twice: int | None = None  # jobs whose handler ran more than once
    recover_s: float | None = None
    recover_what: str = ""  # what recover_s measures
    extra: dict[str, float | int | str] = field(default_factory=dict)


def record(scenario: Scenario) -> None:
    directory = os.environ.get(ENV)
    if not directory:
        return
    data = {**asdict(scenario), "recorded_at": time.time()}
    (Path(directory) / f"{scenario.key}.json").write_text(json.dumps(data, indent=1) + "\n")
