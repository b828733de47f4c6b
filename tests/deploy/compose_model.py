"""compose.yaml as Docker Compose reads it, without Docker: ``${VAR:-default}`` interpolation,
and for each service the command and environment its container runs with, the image's
ENTRYPOINT and ENV included (taken from the service's Dockerfile), and the secret files it
mounts.
"""

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deploy.project import COMPOSE_FILE, REPO_ROOT

# Where compose mounts a service's secret when its `target` is not an absolute path.
SECRETS_MOUNT = "/run/secrets"

# Compose's interpolation: $$ is a literal $, then ${NAME}, ${NAME<op><arg>} and $NAME.
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class InterpolationError(ValueError):
    """A ``${NAME:?message}`` whose variable is missing, or a malformed expression."""


def interpolate_string(value: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        current = env.get(name)
        op, arg = match["op"], match["arg"] or ""
        missing = current is None or (op is not None and op.startswith(":") and current == "")
        if op in {"-", ":-"}:
            return arg if missing else str(current)
        if op in {"?", ":?"}:
            if missing:
                raise InterpolationError(f"{name}: {arg or 'required variable is missing'}")
            return str(current)
        if op in {"+", ":+"}:
            return "" if missing else arg
        return current or ""

    result = _VARIABLE.sub(replace, value)
    if "${" in _VARIABLE.sub("", value):
        raise InterpolationError(f"malformed interpolation in {value!r}")
    return result


def interpolate(node: Any, env: Mapping[str, str]) -> Any:
    """Interpolate every string value of a loaded YAML document (keys are left alone)."""
    if isinstance(node, str):
        return interpolate_string(node, env)
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    return node


def load_compose(path: Path = COMPOSE_FILE, env: Mapping[str, str] | None = None) -> Any:
    """The file as compose sees it: YAML anchors and merge keys resolved, then every value
    interpolated from ``env`` (empty: every default applies)."""
    return interpolate(yaml.safe_load(path.read_text()), env or {})


def environment_of(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's ``environment`` (a mapping or a list of NAME=value) as strings."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    else:
        pairs = raw
    return {name: "" if value is None else str(value) for name, value in pairs.items()}


# -- Dockerfiles ---------------------------------------------------------------------------


@dataclass
class ImageStage:
    """The final stage of a Dockerfile: what a container of that image starts with."""

    base: str
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    healthcheck: str | None = None
    stopsignal: str | None = None
    exposed: list[str] = field(default_factory=list)
    copies_from: list[str] = field(default_factory=list)
    exec_form: dict[str, bool] = field(default_factory=dict)  # ENTRYPOINT/CMD → JSON form?
    sync_packages: list[str] = field(default_factory=list)  # `uv sync --package X`, any stage


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    pairs = []
    for instruction in logical:
        keyword, _, rest = instruction.partition(" ")
        pairs.append((keyword.upper(), rest.strip()))
    return pairs


def _key_values(arguments: str) -> dict[str, str]:
    return dict(token.split("=", 1) for token in shlex.split(arguments) if "=" in token)


def _apply(stage: ImageStage, keyword: str, arguments: str) -> None:
    """Record one instruction of the final stage."""
    if keyword in {"ENTRYPOINT", "CMD"}:
        exec_form = arguments.startswith("[")
        stage.exec_form[keyword] = exec_form
        argv = json.loads(arguments) if exec_form else ["/bin/sh", "-c", arguments]
        setattr(stage, "entrypoint" if keyword == "ENTRYPOINT" else "cmd", argv)
    elif keyword in {"ENV", "LABEL"}:
        (stage.env if keyword == "ENV" else stage.labels).update(_key_values(arguments))
    elif keyword in {"USER", "HEALTHCHECK", "STOPSIGNAL"}:
        setattr(stage, keyword.lower(), arguments)
    elif keyword == "EXPOSE":
        stage.exposed += arguments.split()
    elif keyword == "COPY":
        stage.copies_from += re.findall(r"--from=(\S+)", arguments)


def parse_dockerfile(path: Path) -> ImageStage:
    stage: ImageStage | None = None
    sync_packages: list[str] = []
    for keyword, arguments in _instructions(path.read_text()):
        if keyword == "FROM":
            stage = ImageStage(base=arguments.split()[0])
        elif keyword == "RUN":
            sync_packages += re.findall(r"uv sync\b[^&;]*?--package[ =](\S+)", arguments)
        if stage is not None and keyword != "FROM":
            _apply(stage, keyword, arguments)
    assert stage is not None, f"{path}: no FROM"
    stage.sync_packages = sync_packages
    return stage


# -- services --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceRun:
    """How compose starts one of our services: the argv and the environment of its container."""

    name: str
    argv: list[str]
    env: dict[str, str]  # the image's ENV, overridden by the service's `environment`
    service_env: dict[str, str]  # the service's `environment` alone
    image: ImageStage | None
    secrets: dict[str, str] = field(default_factory=dict)  # path in the container → secret name

    def secret_path(self, variable: str) -> str:
        """The secret that the file ``variable`` names (``DATABASE_URL_FILE``) is mounted from:
        its name in the top-level ``secrets:``."""
        path = self.env[variable]
        assert path in self.secrets, f"{self.name}: {variable}={path} is not a mounted secret"
        return self.secrets[path]


def dockerfile_of(service: Mapping[str, Any]) -> Path | None:
    build = service.get("build")
    if build is None:
        return None
    if isinstance(build, str):
        return REPO_ROOT / build / "Dockerfile"
    return REPO_ROOT / str(build.get("context", ".")) / str(build.get("dockerfile", "Dockerfile"))


def _as_argv(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return shlex.split(value)
    return [str(part) for part in value]


def service_run(compose: Mapping[str, Any], name: str) -> ServiceRun:
    """The argv (entrypoint + command, as Docker combines the service's and the image's) and
    environment that compose gives service ``name``."""
    service = compose["services"][name]
    dockerfile = dockerfile_of(service)
    image = parse_dockerfile(dockerfile) if dockerfile is not None else None
    entrypoint = _as_argv(service.get("entrypoint"))
    command = _as_argv(service.get("command"))
    if entrypoint is None:
        entrypoint = image.entrypoint if image else []
        if command is None:
            command = image.cmd if image else []
    # A service's `entrypoint` resets the image's CMD, as in Docker.
    argv = [*entrypoint, *(command or [])]
    service_env = environment_of(service)
    image_env = dict(image.env) if image else {}
    return ServiceRun(
        name, argv, {**image_env, **service_env}, service_env, image, mounted_secrets(service)
    )


def mounted_secrets(service: Mapping[str, Any]) -> dict[str, str]:
    """The secrets a service lists, by the path compose mounts each at: short syntax at
    /run/secrets/NAME, long syntax at its ``target`` (relative to /run/secrets)."""
    mounted = {}
    for entry in service.get("secrets", []):
        if isinstance(entry, str):
            source, target = entry, entry
        else:
            source, target = entry["source"], entry.get("target", entry["source"])
        mounted[target if target.startswith("/") else f"{SECRETS_MOUNT}/{target}"] = source
    return mounted


def secret_file(compose: Mapping[str, Any], name: str) -> Path:
    """The file a top-level secret is read from, as compose resolves it (relative to the
    project directory)."""
    path = Path(compose["secrets"][name]["file"])
    return path if path.is_absolute() else REPO_ROOT / path


def secret_value(compose: Mapping[str, Any], name: str) -> str:
    """A secret as a process reads it from its file (queue_core drops the final newline)."""
    return secret_file(compose, name).read_text().rstrip("\r\n")


def local_env(compose: Mapping[str, Any], run: ServiceRun) -> dict[str, str]:
    """``run.env`` with each path to a mounted secret replaced by the file compose mounts
    there, so that settings load on this machine as they would in the container."""
    return {
        name: str(secret_file(compose, run.secrets[value])) if value in run.secrets else value
        for name, value in run.env.items()
    }
