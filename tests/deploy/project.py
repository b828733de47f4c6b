"""What the deployment files must agree with, read from the code: the repository's paths, the
environment variables each process's settings classes read, and the console scripts each
workspace package installs.

Everything that parses YAML goes through :func:`load_yaml` / :func:`load_yaml_all`, so the one
untyped import (PyYAML ships no type information) stays here.
"""

import os
import tomllib
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from queue_api.settings import ApiSettings
from queue_core.login_roles import LoginRolesSettings
from queue_core.settings import FILE_SECRET, FILE_SUFFIX, CommonSettings, env_name
from queue_worker.settings import SmtpSettings, WorkerSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "compose.yaml"
COMPOSE_OVERRIDE_EXAMPLE = REPO_ROOT / "compose.override.yaml.example"
SCHEMAS_DIR = REPO_ROOT / "deploy" / "schemas"
COMPOSE_SCHEMA = SCHEMAS_DIR / "compose-spec.json"
CRD_SCHEMAS_DIR = SCHEMAS_DIR / "crds"
K8S_DIR = REPO_ROOT / "deploy" / "k8s"
PROMETHEUS_CONFIG = REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA_DIR = REPO_ROOT / "deploy" / "grafana"

# The settings classes each console script loads at start-up (see their __main__ modules):
# every variable a deployment sets for a process must be a field of one of them.
SETTINGS_BY_SCRIPT: dict[str, tuple[type[BaseSettings], ...]] = {
    "queue-migrate": (CommonSettings,),
    "queue-login-roles": (LoginRolesSettings,),
    "queue-api": (ApiSettings,),
    "queue-worker": (WorkerSettings, SmtpSettings),
}


# Environment variables our settings read: cleared before a test loads settings from a given
# environment, so that the test process's own cannot leak in.
SETTING_PREFIXES = ("API_", "WORKER_", "SMTP_", "LOG_", "DATABASE_URL")


def settings_from(
    monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str], cls: type[BaseSettings]
) -> Any:
    """``cls`` loaded from exactly ``env``, as the process in the container would load it;
    raises if the process would refuse a value."""
    for name in list(os.environ):
        if name.startswith(SETTING_PREFIXES):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return cls()


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_yaml_all(text: str) -> list[dict[str, Any]]:
    """Every non-empty document of a multi-document YAML stream (kustomize's output)."""
    documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    assert all(isinstance(doc, dict) for doc in documents), "a document is not a mapping"
    return documents


def _is_secret(cls: type[BaseSettings], field: str) -> bool:
    return any(item is FILE_SECRET for item in cls.model_fields[field].metadata)


def setting_env_names(classes: Iterable[type[BaseSettings]]) -> frozenset[str]:
    """The environment variables that feed the fields of ``classes``: each field's, and for a
    secret the ``<VARIABLE>_FILE`` that may name its file instead."""
    names = set()
    for cls in classes:
        for field in cls.model_fields:
            names.add(env_name(cls, field))
            if _is_secret(cls, field):
                names.add(env_name(cls, field) + FILE_SUFFIX)
    return frozenset(names)


def script_env_names(script: str) -> frozenset[str]:
    return setting_env_names(SETTINGS_BY_SCRIPT[script])


def secret_env_names() -> frozenset[str]:
    """Every variable that holds a secret (a ``Secret[...]`` field) in any of our processes: a
    deployment gives each only as ``<VARIABLE>_FILE``, never as a value."""
    return frozenset(
        env_name(cls, field)
        for classes in SETTINGS_BY_SCRIPT.values()
        for cls in classes
        for field in cls.model_fields
        if _is_secret(cls, field)
    )


def secret_file_env_names() -> frozenset[str]:
    """The ``<VARIABLE>_FILE`` variables naming those secrets' files."""
    return frozenset(name + FILE_SUFFIX for name in secret_env_names())


@cache
def _pyprojects() -> dict[str, dict[str, Any]]:
    """Each workspace member's pyproject.toml, by distribution name."""
    root = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    members: list[str] = root["tool"]["uv"]["workspace"]["members"]
    projects: dict[str, dict[str, Any]] = {}
    for member in members:
        project = tomllib.loads((REPO_ROOT / member / "pyproject.toml").read_text())["project"]
        projects[project["name"]] = project
    return projects


def console_scripts(package: str) -> frozenset[str]:
    """The console scripts installed with ``package``: its own ``[project.scripts]`` and those
    of the workspace packages it depends on (what ``uv sync --package`` puts in an image)."""
    projects = _pyprojects()
    scripts = set(projects[package].get("scripts", {}))
    for requirement in projects[package].get("dependencies", []):
        name = requirement.split("[")[0].split("=")[0].split("<")[0].split(">")[0].strip()
        if name in projects:
            scripts |= console_scripts(name)
    return frozenset(scripts)


def all_console_scripts() -> frozenset[str]:
    return frozenset(script for project in _pyprojects().values() for script in project["scripts"])
