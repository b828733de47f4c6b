"""The site's generated reference (docs/_hooks/docs_reference.py), checked in the test suite
too, so that a renamed setting or a metric the alerts use but no process exports fails
`make test`, not only `make docs`."""

import importlib
import json
import pkgutil
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml

from queue_core.settings import EnvSettings, env_name

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


def _settings_classes_of(package: str) -> Iterator[type[EnvSettings]]:
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, f"{package}."):
        if info.name.endswith("__main__") or ".migrations." in info.name:
            continue
        for value in vars(importlib.import_module(info.name)).values():
            if isinstance(value, type) and issubclass(value, EnvSettings):
                yield value


def test_every_settings_class_of_the_code_is_in_the_settings_reference() -> None:
    documented = docs_reference.settings_variables()
    for package in ("queue_core", "queue_api", "queue_worker"):
        for cls in _settings_classes_of(package):
            read = {env_name(cls, name) for name in cls.model_fields}
            missing = sorted(read - set(documented))
            assert not missing, f"{cls.__module__}.{cls.__name__} reads {missing}, not documented"


def test_the_compose_variables_table_is_compose_yamls() -> None:
    """Every ${VARIABLE:-default} of compose.yaml that is no setting of ours is in the table of
    the Docker Compose page, with compose's default, and the table names no other."""
    compose = (REPO_ROOT / "compose.yaml").read_text()
    defaults = dict(re.findall(r"\$\{([A-Z_]+):-([^}]*)\}", compose))
    settings = set(docs_reference.settings_variables())
    own = {name: default for name, default in defaults.items() if name not in settings}
    page = (REPO_ROOT / "docs" / "how-to" / "docker-compose.md").read_text()
    rows = re.findall(r"^\| (`[A-Z_]+`(?:, `[A-Z_]+`)*) \| `([^`]*)` \|", page, re.MULTILINE)
    table = {name: default for names, default in rows for name in re.findall(r"`(\w+)`", names)}
    assert table == own


def test_the_scope_table_is_the_openapi_documents() -> None:
    """The scope table of the API keys page names, for each scope, exactly the operations the
    OpenAPI document says need it (path parameters compared as {})."""
    from queue_core.keys import ALL_SCOPES  # noqa: PLC0415 - the scopes the API knows

    def shape(path: str) -> str:
        return re.sub(r"\{[^}]+\}", "{}", path)

    needed: dict[str, set[str]] = {}
    paths = json.loads(docs_reference.openapi_document())["paths"]
    for path, item in paths.items():
        for method, operation in item.items():
            for requirement in operation.get("security") or []:
                for scopes in requirement.values():
                    for scope in scopes:
                        needed.setdefault(scope, set()).add(f"{method.upper()} {shape(path)}")
    page = (REPO_ROOT / "docs" / "how-to" / "rotate-keys.md").read_text()
    table = {
        scope: {shape(op) for op in re.findall(r"`((?:GET|POST|PUT|DELETE) [^`]+)`", allows)}
        for scope, allows in re.findall(r"^\| `([a-z]+:[a-z]+)` \| (.*) \|$", page, re.MULTILINE)
    }
    assert set(table) == {str(scope) for scope in ALL_SCOPES}
    assert {scope: ops for scope, ops in table.items() if ops} == needed


def test_every_make_target_is_in_the_development_table() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z-]+):.*?## ", makefile, re.MULTILINE))
    page = (REPO_ROOT / "docs" / "development.md").read_text()
    table = set(re.findall(r"^\| `make ([a-z-]+)` \|", page, re.MULTILINE))
    # docs-serve shares the docs row.
    assert targets - table <= {"docs-serve"}, sorted(targets - table)
    assert "`make docs-serve`" in page
    assert table <= targets
