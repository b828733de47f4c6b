"""deploy/prometheus/ passes Prometheus' own checks: `promtool check config`, `promtool check
rules`, the alert rules' unit tests (`promtool test rules alerts_test.yml`), and a real
Prometheus applying the scrape jobs' relabeling to synthetic compose and Kubernetes targets."""

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from observability.conftest import INSTALL_ALLOWANCE_S
from observability.deploy_files import (
    ALERT_RULE_TESTS,
    ALERT_RULES,
    PROMETHEUS_CONFIG,
    dump_yaml,
    load_yaml,
    selectors,
    without_kubernetes_discovery,
)
from observability.prometheus_bin import PrometheusBinaries
from observability.prometheus_server import PrometheusServer

pytestmark = pytest.mark.timeout(INSTALL_ALLOWANCE_S + 60)

PROMTOOL_TIMEOUT_S = 60.0
QUEUE_JOBS = ("queue-api", "queue-worker")


def promtool(binaries: PrometheusBinaries, *args: str, cwd: Path | None = None) -> str:
    """Run promtool; fail with its output unless it exits 0. Returns that output."""
    done = subprocess.run(
        [str(binaries.promtool), *args],
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT_S,
        check=False,
        cwd=cwd,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"promtool {' '.join(args)} exited {done.returncode}:\n{output}"
    return output


def _scrape_jobs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in config["scrape_configs"]}


def test_prometheus_config_passes_promtool_check(
    prometheus_bin: PrometheusBinaries, tmp_path: Path
) -> None:
    # promtool insists that the API key's credentials file exists: where compose or Kubernetes
    # mounts it at run time, this check puts a stand-in of its own.
    config = load_yaml(PROMETHEUS_CONFIG)
    key_file = tmp_path / "api-metrics.key"
    key_file.write_text("tq_stand-in\n")
    api_job = _scrape_jobs(config)["queue-api"]
    assert api_job["authorization"]["credentials_file"] == "/run/queue-keys/api-metrics.key"
    api_job["authorization"]["credentials_file"] = str(key_file)
    config["rule_files"] = [str(PROMETHEUS_CONFIG.parent / f) for f in config["rule_files"]]
    copy = tmp_path / "prometheus.yml"
    dump_yaml(config, copy)
    done = subprocess.run(
        [str(prometheus_bin.promtool), "check", "config", str(copy)],
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT_S,
        check=False,
    )
    output = done.stdout + done.stderr
    if done.returncode == 0:
        return  # an upstream build: it checked every block, Kubernetes discovery included
    # Debian's build leaves out Kubernetes discovery; check all the rest of the file (its
    # jobs, relabeling and DNS discovery, and the rule files it loads).
    assert "kubernetes_sd_configs not found" in output, output
    dump_yaml(without_kubernetes_discovery(config), copy)
    checked = promtool(prometheus_bin, "check", "config", str(copy))
    assert "SUCCESS: 1 rule files found" in checked, checked


def test_config_scrapes_both_services_by_dns_and_kubernetes_pods() -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    assert config["rule_files"] == ["alerts.yml"]
    jobs = _scrape_jobs(config)
    expected_dns = {"queue-api": (["api"], 8080), "queue-worker": (["worker"], 9464)}
    for name in QUEUE_JOBS:
        job = jobs[name]
        (dns,) = job["dns_sd_configs"]
        assert (dns["names"], dns["port"], dns["type"]) == (*expected_dns[name], "A")
        assert job["kubernetes_sd_configs"] == [{"role": "pod"}]


def test_alert_rules_pass_promtool_check(prometheus_bin: PrometheusBinaries) -> None:
    output = promtool(prometheus_bin, "check", "rules", str(ALERT_RULES))
    assert "SUCCESS: 15 rules found" in output, output


def test_alert_rules_every_alert_has_severity_summary_and_description() -> None:
    for group in load_yaml(ALERT_RULES)["groups"]:
        for rule in group["rules"]:
            name = rule["alert"]
            assert rule["labels"]["severity"] in {"warning", "critical"}, name
            assert rule["annotations"]["summary"], name
            assert rule["annotations"]["description"], name
            assert rule.get("for"), f"{name}: no `for`, it would fire on one evaluation"


def test_alert_rules_name_their_metrics_so_the_proof_checks_they_are_scraped() -> None:
    """test_prometheus_proof checks that each metric an alert reads is scraped, through the
    selectors it finds by name (``queue_...``). A metric reached another way (a regex on
    ``__name__``) escapes that check: a misspelt name there would leave an alert that never
    fires, and no test would fail."""
    for group in load_yaml(ALERT_RULES)["groups"]:
        for rule in group["rules"]:
            name, expr = rule["alert"], str(rule["expr"])
            assert "__name__" not in expr, f"{name}: name its metrics: {expr}"
            assert selectors(expr), f"{name}: reads no metric of ours by name: {expr}"


def test_alert_rules_unit_tests_pass(prometheus_bin: PrometheusBinaries) -> None:
    output = promtool(
        prometheus_bin, "test", "rules", ALERT_RULE_TESTS.name, cwd=ALERT_RULE_TESTS.parent
    )
    assert "SUCCESS" in output, output


# -- relabeling ------------------------------------------------------------------------------


def _pod(name: str, app: str, port_name: str, port: int, phase: str = "Running") -> dict[str, Any]:
    """A target as Kubernetes pod discovery reports it (a subset of its meta labels). Every
    address is on loopback, where nothing listens: Prometheus only tries to scrape it."""
    return {
        "targets": [f"127.0.0.1:{port}"],
        "labels": {
            "__meta_kubernetes_namespace": "task-queue",
            "__meta_kubernetes_pod_name": name,
            "__meta_kubernetes_pod_phase": phase,
            "__meta_kubernetes_pod_label_app_kubernetes_io_name": app,
            "__meta_kubernetes_pod_container_port_name": port_name,
        },
    }


PODS = [
    _pod("queue-api-7d9f-abcde", "queue-api", "http", 20001),
    _pod("queue-worker-5c8b-fghij", "queue-worker", "metrics", 20002),
    _pod("queue-worker-5c8b-klmno", "queue-worker", "metrics", 20003),
    # Dropped: a finished worker pod, a sidecar's unnamed port, the migration Job, another app
    # with a port named `http`, and an unlabelled pod with an unnamed port.
    _pod("queue-worker-5c8b-pqrst", "queue-worker", "metrics", 20004, phase="Succeeded"),
    _pod("queue-api-7d9f-abcde", "queue-api", "", 20005),
    _pod("queue-migrate-xyz12", "queue-migrate", "", 20006),
    _pod("postgres-0", "postgres", "http", 20007),
    _pod("unlabelled", "", "", 20008),
]
DNS_TARGETS = {
    "queue-api": {"targets": ["127.0.0.1:20101"], "labels": {"__meta_dns_name": "api"}},
    "queue-worker": {
        "targets": ["127.0.0.1:20102", "127.0.0.1:20103"],
        "labels": {"__meta_dns_name": "worker"},
    },
}
KEPT = {
    "queue-api": {
        "127.0.0.1:20001": {"namespace": "task-queue", "pod": "queue-api-7d9f-abcde"},
        "127.0.0.1:20101": {},
    },
    "queue-worker": {
        "127.0.0.1:20002": {"namespace": "task-queue", "pod": "queue-worker-5c8b-fghij"},
        "127.0.0.1:20003": {"namespace": "task-queue", "pod": "queue-worker-5c8b-klmno"},
        "127.0.0.1:20102": {},
        "127.0.0.1:20103": {},
    },
}


@pytest.fixture(name="relabel_prometheus")
def fx_relabel_prometheus(
    prometheus_bin: PrometheusBinaries, tmp_path: Path
) -> Iterator[PrometheusServer]:
    """Prometheus with our two scrape jobs, each one's discovery swapped for a file listing
    what DNS and Kubernetes pod discovery would find, meta labels included."""
    jobs = _scrape_jobs(load_yaml(PROMETHEUS_CONFIG))
    scrape_configs = []
    for name in QUEUE_JOBS:
        targets_file = tmp_path / f"{name}.json"
        targets_file.write_text(json.dumps([DNS_TARGETS[name], *PODS]))
        job = {k: v for k, v in jobs[name].items() if not k.endswith("_sd_configs")}
        job["file_sd_configs"] = [{"files": [str(targets_file)]}]
        job["scrape_interval"] = "1h"  # nothing listens there; keep it quiet
        scrape_configs.append(job)
    config = tmp_path / "relabel.yml"
    dump_yaml({"scrape_configs": scrape_configs}, config)
    server = PrometheusServer(prometheus_bin.prometheus, config, tmp_path)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_relabeling_keeps_every_replica_and_only_the_queue_pods_ports(
    relabel_prometheus: PrometheusServer,
) -> None:
    kept: dict[str, dict[str, dict[str, str]]] = {}

    def discovered() -> bool:
        targets = relabel_prometheus.targets()
        kept.clear()
        for target in targets["activeTargets"]:
            labels = dict(target["labels"])
            job, address = labels.pop("job"), labels.pop("instance")
            kept.setdefault(job, {})[address] = labels
        dropped = len(targets["droppedTargets"])
        # Each job is offered all 8 pods and its own DNS replicas.
        return sum(map(len, kept.values())) + dropped == 2 * len(PODS) + 3

    relabel_prometheus.wait(discovered, what="every synthetic target discovered", timeout_s=30)
    assert kept == KEPT
