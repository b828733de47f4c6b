"""The Grafana files are well-formed for Grafana: the dashboard's structure, its references to
the provisioned datasource, and the provisioning that loads both. (Whether each panel's query
returns data is test_prometheus_proof's job.)"""

from collections import Counter
from typing import Any

import pytest

from observability.deploy_files import (
    DASHBOARD,
    GRAFANA_DASHBOARD_PROVIDER,
    GRAFANA_DATASOURCES,
    dashboard_panels,
    grafana_to_promql,
    load_dashboard,
    load_yaml,
)

GRID_COLUMNS = 24
# Grafana's own pseudo-datasource, which the built-in annotation query uses.
GRAFANA_BUILTIN_UID = "-- Grafana --"


@pytest.fixture(name="dashboard")
def fx_dashboard() -> dict[str, Any]:
    return load_dashboard()


@pytest.fixture(name="datasource_uids")
def fx_datasource_uids() -> dict[str, str]:
    """uid → type of every provisioned datasource."""
    provisioned = load_yaml(GRAFANA_DATASOURCES)
    assert provisioned["apiVersion"] == 1
    return {ds["uid"]: ds["type"] for ds in provisioned["datasources"]}


def _is_row(panel: dict[str, Any]) -> bool:
    return panel.get("type") == "row"


def test_dashboard_is_a_provisionable_grafana_dashboard(dashboard: dict[str, Any]) -> None:
    assert isinstance(dashboard["schemaVersion"], int)
    assert dashboard["schemaVersion"] >= 36, "older schemas predate the timeseries panel"
    assert dashboard["uid"] == "task-queue"
    assert dashboard["title"]
    # A provisioned dashboard must not carry a database id from the instance it was exported on.
    assert dashboard.get("id") is None
    assert dashboard["panels"], "no panels"


def test_panel_ids_and_titles_are_unique(dashboard: dict[str, Any]) -> None:
    panels = dashboard_panels(dashboard)
    ids = Counter(panel.get("id") for panel in panels)
    assert all(isinstance(panel_id, int) for panel_id in ids), ids
    assert [i for i, n in ids.items() if n > 1] == [], "duplicate panel ids"
    titles = Counter(panel.get("title") for panel in panels)
    assert all(titles), "a panel without a title"
    assert [t for t, n in titles.items() if n > 1] == [], "duplicate panel titles"


def test_every_panel_has_a_grid_position_inside_the_grid_and_none_overlap(
    dashboard: dict[str, Any],
) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard_panels(dashboard):
        pos = panel.get("gridPos")
        assert isinstance(pos, dict), f"{panel['title']}: no gridPos"
        x, y, w, h = (pos.get(key) for key in ("x", "y", "w", "h"))
        where = f"{panel['title']}: gridPos {pos}"
        assert isinstance(x, int), where
        assert isinstance(y, int), where
        assert isinstance(w, int), where
        assert isinstance(h, int), where
        assert x >= 0, where
        assert y >= 0, where
        assert w > 0, where
        assert h > 0, where
        assert x + w <= GRID_COLUMNS, where
        for cell in ((cx, cy) for cx in range(x, x + w) for cy in range(y, y + h)):
            assert cell not in cells, f"{panel['title']} overlaps {cells[cell]} at {cell}"
            cells[cell] = panel["title"]


def test_every_panel_and_query_uses_the_provisioned_prometheus_datasource(
    dashboard: dict[str, Any], datasource_uids: dict[str, str]
) -> None:
    expected = {"type": "prometheus", "uid": "prometheus"}
    assert datasource_uids.get("prometheus") == "prometheus", datasource_uids
    for panel in dashboard_panels(dashboard):
        if _is_row(panel):
            continue
        assert panel.get("datasource") == expected, panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", expected) == expected, panel["title"]
    for variable in dashboard["templating"]["list"]:
        if "datasource" in variable:
            assert variable["datasource"] == expected, variable["name"]
    for annotation in dashboard.get("annotations", {}).get("list", []):
        uid = annotation["datasource"]["uid"]
        assert uid == GRAFANA_BUILTIN_UID or uid in datasource_uids, annotation


def test_every_query_has_an_expression_and_a_unique_ref_id(dashboard: dict[str, Any]) -> None:
    for panel in dashboard_panels(dashboard):
        if _is_row(panel):
            assert not panel.get("targets"), f"row {panel['title']} has queries"
            continue
        targets = panel.get("targets")
        assert targets, f"{panel['title']}: no queries"
        ref_ids = [target.get("refId") for target in targets]
        assert all(ref_ids), f"{panel['title']}: a query without refId"
        assert len(set(ref_ids)) == len(ref_ids), f"{panel['title']}: duplicate refIds"
        for target in targets:
            expr = target.get("expr")
            assert isinstance(expr, str), f"{panel['title']} {target['refId']}: no expr"
            assert expr.strip(), f"{panel['title']} {target['refId']}: empty expr"
            # Every variable it uses is one the dashboard or Grafana defines.
            grafana_to_promql(expr)


def test_queue_variable_lists_the_queues_and_offers_all(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    queue = variables["queue"]
    assert queue["type"] == "query"
    assert queue["definition"] == "label_values(queue_jobs_due, queue)"
    assert queue["query"]["query"] == "label_values(queue_jobs_due, queue)"
    assert queue["includeAll"] is True
    assert queue["allValue"] == ".*"


def test_dashboard_provider_loads_the_dashboards_directory() -> None:
    provider_file = load_yaml(GRAFANA_DASHBOARD_PROVIDER)
    assert provider_file["apiVersion"] == 1
    (provider,) = provider_file["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    # The comment at the top of the provider file says where to mount the directory.
    assert path in GRAFANA_DASHBOARD_PROVIDER.read_text().split("providers:")[0]
    assert DASHBOARD.parent.name == "dashboards"
