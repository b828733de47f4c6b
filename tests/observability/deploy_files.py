"""The observability files under deploy/, loaded for the tests, and the PromQL they contain.

Everything that reads YAML goes through :func:`load_yaml`, so the one untyped import (PyYAML
ships no type information) stays here.
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERT_RULES = PROMETHEUS_DIR / "alerts.yml"
ALERT_RULE_TESTS = Path(__file__).resolve().parent / "alerts_test.yml"
GRAFANA_DIR = REPO_ROOT / "deploy" / "grafana"
GRAFANA_DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
GRAFANA_DASHBOARD_PROVIDER = GRAFANA_DIR / "provisioning" / "dashboards" / "task-queue.yml"
DASHBOARD = GRAFANA_DIR / "dashboards" / "task-queue.json"

# What Grafana puts in place of its variables when the proof test runs a panel's query itself.
# 1m spans many of the proof's 1 s scrapes, like $__rate_interval does in production.
GRAFANA_VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
    "queue": ".*",  # the dashboard's `queue` variable set to All (its allValue)
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
# The metrics our services export, and `up`, as they appear in an expression with their
# optional label matchers. Label names (queue, type) and strings ("queue-worker") never match:
# a metric name here is `up` or starts with `queue_`, and is not followed by `=`, `-` or `"`.
_SELECTOR = re.compile(r"(?<![\w\"-])(up|queue_\w+)(?![\w\"=~!-])\s*(\{[^}]*\})?")


def load_yaml(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict), f"{path}: expected a mapping at the top, got {loaded!r}"
    return loaded


def dump_yaml(document: dict[str, Any], path: Path) -> None:
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def load_dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD.read_text())
    assert isinstance(loaded, dict), f"{DASHBOARD}: expected a JSON object"
    return loaded


def dashboard_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    panels: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


@dataclass(frozen=True)
class Query:
    """One PromQL expression from the deploy files, and where it comes from."""

    source: str  # "panel <title> <refId>" or "alert <name>"
    expr: str

    @property
    def promql(self) -> str:
        """The expression with Grafana's variables replaced, as Grafana would send it."""
        return grafana_to_promql(self.expr)


def dashboard_queries(dashboard: dict[str, Any]) -> list[Query]:
    return [
        Query(f"panel {panel['title']!r} {target.get('refId')}", str(target.get("expr", "")))
        for panel in dashboard_panels(dashboard)
        for target in panel.get("targets", [])
    ]


def alert_rules(rules: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


def alert_queries(rules: dict[str, Any]) -> list[Query]:
    return [Query(f"alert {rule['alert']}", str(rule["expr"])) for rule in alert_rules(rules)]


def grafana_to_promql(expr: str) -> str:
    def substitute(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        assert name in GRAFANA_VARIABLES, f"unknown Grafana variable ${name} in {expr!r}"
        return GRAFANA_VARIABLES[name]

    return _VARIABLE.sub(substitute, expr)


def selectors(promql: str) -> list[str]:
    """The series selectors of our metrics in ``promql``, e.g. ``up{job="queue-worker"}``."""
    return sorted({name + (matchers or "") for name, matchers in _SELECTOR.findall(promql)})


def without_kubernetes_discovery(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without its kubernetes_sd_configs blocks, which Debian's Prometheus build
    does not know (it leaves Kubernetes discovery out)."""
    return {
        **config,
        "scrape_configs": [
            {key: value for key, value in job.items() if key != "kubernetes_sd_configs"}
            for job in config["scrape_configs"]
        ],
    }
