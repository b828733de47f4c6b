"""compose.yaml and the override example against the Compose Specification's JSON schema, kept
in deploy/schemas/ (see the README there for its origin)."""

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from deploy.compose_model import load_compose
from deploy.project import COMPOSE_FILE, COMPOSE_OVERRIDE_EXAMPLE, COMPOSE_SCHEMA, load_yaml


def _errors(document: Any) -> list[str]:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(document)
    ]


@pytest.mark.parametrize("path", [COMPOSE_FILE, COMPOSE_OVERRIDE_EXAMPLE], ids=lambda p: p.name)
def test_the_file_as_written_is_valid(path: Path) -> None:
    assert _errors(load_yaml(path)) == []


@pytest.mark.parametrize("path", [COMPOSE_FILE, COMPOSE_OVERRIDE_EXAMPLE], ids=lambda p: p.name)
def test_the_file_as_compose_interpolates_it_is_valid(path: Path) -> None:
    # Compose validates after interpolation; with no variable set, every default applies.
    assert _errors(load_compose(path)) == []


def test_the_schema_catches_mistakes() -> None:
    compose = load_compose()
    compose["services"]["worker"]["depends_on"]["migrate"]["condition"] = "service_done"
    compose["services"]["api"]["helthcheck"] = {"test": ["CMD", "true"]}
    errors = _errors(compose)
    assert any("service_done" in error for error in errors), errors
    assert any("helthcheck" in error for error in errors), errors
