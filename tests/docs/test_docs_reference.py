"""The site's generated reference (docs/_hooks/docs_reference.py), checked in the test suite
too, so that a renamed setting or a metric the alerts use but no process exports fails
`make test`, not only `make docs`."""

import json
import re
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "docs" / "_hooks"))

import docs_reference  # noqa: E402 - from the hooks directory, put on the path above


def test_every_setting_the_code_reads_has_a_meaning_and_no_other() -> None:
    docs_reference.check_meanings()  # raises SystemExit naming the difference
    page = docs_reference.settings_page()
    for variable in docs_reference.settings_variables():
        assert f"| `{variable}` |" in page


def test_every_metric_the_alerts_use_is_in_the_metrics_reference() -> None:
    page = docs_reference.metrics_page()
    documented = set(re.findall(r"^\| `(queue_[a-z_]+)` \|", page, re.MULTILINE))
    rules = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    exprs = " ".join(str(rule["expr"]) for group in rules["groups"] for rule in group["rules"])
    used = set(re.findall(r"\b(queue_[a-z_]+)\b", exprs))
    unknown = sorted(
        name
        for name in used
        if not {name, f"{name}_total", re.sub(r"_(bucket|count|sum)$", "", name)} & documented
    )
    assert not unknown, f"alerts.yml uses {unknown}, which no process exports"


def test_the_http_reference_is_the_apps_openapi_document() -> None:
    document = json.loads(docs_reference.openapi_document())
    assert document["openapi"].startswith("3.")
    assert "/jobs" in document["paths"]
    assert "/v1/jobs" in document["paths"]


def test_the_cli_reference_holds_every_command() -> None:
    page = docs_reference.cli_page()
    for title in ("queuectl enqueue", "queuectl keys", "queue-keys create", "queue-migrate"):
        assert f"## `{title}`" in page
