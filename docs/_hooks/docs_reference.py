"""The site's reference pages, generated from the code at every build (a MkDocs hook), so that
nothing in them is typed twice: the settings from the pydantic settings classes, the metrics
from the prometheus_client registry of the API's and the worker's modules, the CLI from its own
``--help``, and the HTTP API from the OpenAPI document ``create_app`` serves.

The meaning of each setting is the one piece of prose here (``settings_meanings.yml``); the
build fails when a variable the code reads has none, or when one names a variable the code does
not read, so the two cannot drift.
"""

import asyncio
import importlib
import json
import pkgutil
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import click
import yaml
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from prometheus_client import REGISTRY
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

HERE = Path(__file__).parent
REPO_ROOT = HERE.parent.parent
MEANINGS = HERE / "settings_meanings.yml"
REDOC = REPO_ROOT / "services/api/src/queue_api/ui/static/vendor/redoc-2.5.2/redoc.standalone.js"
FILE_SUFFIX = "_FILE"


# -- settings ------------------------------------------------------------------------------


def _settings_classes() -> list[tuple[str, type[BaseSettings]]]:
    from queue_api.settings import ApiSettings  # noqa: PLC0415 - imported at build time
    from queue_core.login_roles import LoginRolesSettings  # noqa: PLC0415
    from queue_core.settings import CommonSettings  # noqa: PLC0415
    from queue_worker.settings import SmtpSettings, WorkerSettings  # noqa: PLC0415

    return [
        ("every process", CommonSettings),
        ("queue-api", ApiSettings),
        ("queue-worker", WorkerSettings),
        ("queue-worker (the built-in `send_email`)", SmtpSettings),
        ("queue-login-roles", LoginRolesSettings),
    ]


def _is_secret(info: FieldInfo) -> bool:
    from queue_core.settings import FILE_SECRET  # noqa: PLC0415

    return any(item is FILE_SECRET for item in info.metadata)


def _own_fields(cls: type[BaseSettings]) -> dict[str, FieldInfo]:
    """The fields ``cls`` adds to its bases: the common ones are listed once."""
    inherited: set[str] = set()
    for base in cls.__mro__[1:]:
        inherited |= set(getattr(base, "model_fields", {}))
    return {name: info for name, info in cls.model_fields.items() if name not in inherited}


def settings_variables() -> dict[str, tuple[str, str, str]]:
    """Every variable the processes read: name → (who reads it, type, default)."""
    from queue_core.settings import env_name  # noqa: PLC0415

    variables: dict[str, tuple[str, str, str]] = {}
    for who, cls in _settings_classes():
        for name, info in _own_fields(cls).items():
            variable = env_name(cls, name)
            variables[variable] = (who, _type_of(info), _default_of(info))
            if _is_secret(info):
                variables[variable + FILE_SUFFIX] = (who, "path", "none")
    return variables


def _format_type(tp: Any) -> str:  # noqa: ANN401 - any annotation
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return _format_type(args[0])
    if origin is Literal:
        return " / ".join(str(a) for a in args)
    if origin in (Union, UnionType):
        return " or ".join(_format_type(a) for a in args)
    if origin is tuple:
        return f"comma-separated list of {_format_type(args[0])}"
    if tp is type(None):
        return "unset"
    return getattr(tp, "__name__", str(tp))


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _type_of(info: FieldInfo) -> str:
    bounds = [
        f"{key} {_number(getattr(meta, key))}"
        for meta in info.metadata
        for key in ("gt", "ge", "lt", "le", "min_length", "max_length")
        if getattr(meta, key, None) is not None
    ]
    text = _format_type(info.annotation)
    return f"{text} ({', '.join(bounds)})" if bounds else text


def _default_of(info: FieldInfo) -> str:
    if info.is_required():
        return "(required)"
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "(empty)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _meanings() -> dict[str, str]:
    loaded: dict[str, str] = yaml.safe_load(MEANINGS.read_text())
    return loaded


def check_meanings() -> None:
    """Fail the build when the prose and the code name different variables."""
    read = set(settings_variables())
    meant = set(_meanings())
    problems = []
    if missing := sorted(read - meant):
        problems.append(f"read by the code, no meaning in {MEANINGS.name}: {missing}")
    if stale := sorted(meant - read):
        problems.append(f"in {MEANINGS.name}, read by no settings class: {stale}")
    if problems:
        raise SystemExit("; ".join(problems))


def settings_page() -> str:
    check_meanings()
    meanings = _meanings()
    lines = [
        "# Settings",
        "",
        "Generated at build time from the pydantic settings classes (`queue_core.settings`,",
        "`queue_api.settings`, `queue_worker.settings`): the variables, their types, bounds and",
        "defaults are the code's own. Every process reads environment variables only, into one",
        "typed settings object at start-up; a bad value stops it with exit status 2 and one line",
        "naming the variable. See [Configuration](../how-to/configuration.md) for secrets from",
        "files and TLS to PostgreSQL.",
        "",
    ]
    variables = settings_variables()
    for who, cls in _settings_classes():
        lines += [f"## {who}", "", f"`{cls.__module__}.{cls.__name__}`", ""]
        lines += ["| variable | type | default | meaning |", "|---|---|---|---|"]
        for name in _own_fields(cls):
            from queue_core.settings import env_name  # noqa: PLC0415

            variable = env_name(cls, name)
            names = [variable]
            if variable + FILE_SUFFIX in variables:
                names.append(variable + FILE_SUFFIX)
            for each in names:
                _who, type_, default = variables[each]
                meaning = meanings[each].replace("|", "\\|").replace("\n", " ")
                lines.append(f"| `{each}` | `{type_}` | `{default}` | {meaning} |")
        lines.append("")
    return "\n".join(lines)


# -- metrics -------------------------------------------------------------------------------


def _collectors_of(package: str) -> dict[int, Any]:
    """The registered collectors that the modules of ``package`` hold as globals, by id: who
    exports a metric does not depend on what was imported before."""
    root: ModuleType = importlib.import_module(package)
    modules = [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(root.__path__, f"{package}.")
        if not info.name.endswith("__main__")
    ]
    registered = {id(c): c for c in REGISTRY._names_to_collectors.values()}  # noqa: SLF001
    found: dict[int, Any] = {}
    for module in modules:
        for value in vars(module).values():
            if id(value) in registered:
                found[id(value)] = value
    return found


def _label_names(collector: Any, family_name: str) -> tuple[str, ...]:  # noqa: ANN401
    own = getattr(collector, "_labelnames", None)
    if own is not None:
        return tuple(own)
    for value in vars(collector).values():  # a custom collector's cells carry theirs
        name = getattr(value, "name", None)
        if name in (family_name, f"{family_name}_total") and hasattr(value, "labelnames"):
            return tuple(value.labelnames)
    for family in collector.collect():
        if family.name == family_name and family.samples:
            return tuple(family.samples[0].labels)
    return ()


class _EveryStatistic:
    """A stand-in for ``Queue`` with every statistic present, so that the API's queue-stats
    collector yields every family it can (some appear only once the database has answered)."""

    async def stats(self) -> list[Any]:
        from queue_core.jobs import QueueStats  # noqa: PLC0415

        return [QueueStats("default", 0, 0, 0, 0.0)]

    async def oldest_transaction_age_s(self) -> float:
        return 0.0

    async def jobs_table_stats(self) -> Any:  # noqa: ANN401
        from queue_core.jobs import JobsTableStats  # noqa: PLC0415

        return JobsTableStats(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def _families(collector: Any) -> list[Any]:  # noqa: ANN401
    refresh = getattr(collector, "refresh_if_stale", None)
    if refresh is not None:  # the API's statistics: a fresh one, filled by the stand-in
        collector = type(collector)()
        collector.configure(["default"])
        asyncio.run(collector.refresh_if_stale(_EveryStatistic()))
        return [(collector, family) for family in collector.collect()]
    describe = getattr(collector, "describe", None)
    return [(collector, family) for family in (describe() if describe else collector.collect())]


def metrics_by_process() -> dict[str, list[tuple[str, str, str, tuple[str, ...]]]]:
    """Every queue metric, by the process that exposes it: (name, type, help, labels)."""
    found: dict[str, list[tuple[str, str, str, tuple[str, ...]]]] = {}
    attributed: set[str] = set()
    for process, package in (("queue-api", "queue_api"), ("queue-worker", "queue_worker")):
        rows = {}
        for registered_collector in _collectors_of(package).values():
            for collector, family in _families(registered_collector):
                if not family.name.startswith("queue_"):
                    continue
                labels = _label_names(collector, family.name)
                suffix = "_total" if family.type == "counter" else ""
                rows[family.name + suffix] = (family.type, family.documentation, labels)
        attributed |= {name.removesuffix("_total") for name in rows}
        found[process] = [(name, *rows[name]) for name in sorted(rows)]
    # A queue metric registered by neither package's globals would be missing from the page.
    stray = {
        name
        for name in REGISTRY._names_to_collectors  # noqa: SLF001
        if name.startswith("queue_")
        and re.sub(r"_(total|created|bucket|count|sum)$", "", name) not in attributed
    }
    if stray:
        raise SystemExit(f"metrics registered outside the services' module globals: {stray}")
    return found


def metrics_page() -> str:
    lines = [
        "# Metrics",
        "",
        "Generated at build time from the prometheus_client registry of the API's and the",
        "worker's modules: the names, types, labels and help texts are the code's own. The API",
        "serves `/metrics` on its own port; every worker serves `/metrics` and `/healthz` on",
        "`WORKER_METRICS_PORT`. See [Monitor with Grafana](../how-to/monitor.md) for the",
        "dashboard and the alerts built on them.",
        "",
    ]
    for process, rows in metrics_by_process().items():
        lines += [f"## {process}", "", "| metric | type | labels | meaning |", "|---|---|---|---|"]
        for name, type_, help_, labels in rows:
            label_text = ", ".join(f"`{label}`" for label in labels)
            lines.append(f"| `{name}` | {type_} | {label_text} | {help_.replace('|', '/')} |")
        lines.append("")
    return "\n".join(lines)


# -- command lines -------------------------------------------------------------------------


def _click_helps(command: click.Command, path: list[str]) -> Iterator[tuple[str, str]]:
    ctx = click.Context(
        command, info_name=" ".join(path), terminal_width=100, max_content_width=100
    )
    yield " ".join(path), command.get_help(ctx)
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None:
                yield from _click_helps(sub, [*path, name])


def _argparse_helps(program: str) -> Iterator[tuple[str, str]]:
    binary = str(Path(sys.executable).parent / program)
    top = subprocess.run(
        [binary, "--help"], capture_output=True, text=True, check=True, env={"COLUMNS": "100"}
    ).stdout
    yield program, top
    subcommands = re.search(r"\{([a-z,-]+)\}", top.splitlines()[0])
    for sub in subcommands.group(1).split(",") if subcommands else []:
        text = subprocess.run(
            [binary, sub, "--help"],
            capture_output=True,
            text=True,
            check=True,
            env={"COLUMNS": "100"},
        ).stdout
        yield f"{program} {sub}", text


def cli_page() -> str:
    from queue_client.cli.main import cli  # noqa: PLC0415

    lines = [
        "# Command line",
        "",
        "Generated at build time from each program's own `--help`. `queue-api` and",
        "`queue-worker` take no arguments: they read the [settings](settings.md).",
        "",
    ]
    helps = list(_click_helps(cli, ["queuectl"]))
    for program in ("queue-keys", "queue-migrate", "queue-login-roles"):
        helps += list(_argparse_helps(program))
    for title, text in helps:
        lines += [f"## `{title}`", "", "```text", text.rstrip(), "```", ""]
    return "\n".join(lines)


# -- the HTTP API --------------------------------------------------------------------------


def openapi_document() -> str:
    """The document the API serves at /schema/openapi.json, from the app itself."""
    from queue_api.app import create_app  # noqa: PLC0415
    from queue_api.settings import ApiSettings  # noqa: PLC0415

    # No connection is made: the document is built from the routes.
    settings = ApiSettings(
        database_url="postgresql://docs@127.0.0.1/docs",
        ui_secret="d" * 32,
    )
    app = create_app(settings)
    schema = app.openapi_schema.to_schema()
    return json.dumps(schema, indent=1, sort_keys=True)


# -- the hook ------------------------------------------------------------------------------


def on_files(files: Files, config: MkDocsConfig) -> Files:
    generated = {
        "reference/settings.md": settings_page(),
        "reference/metrics.md": metrics_page(),
        "reference/cli.md": cli_page(),
        "reference/openapi.json": openapi_document(),
    }
    for uri, content in generated.items():
        files.append(File.generated(config, uri, content=content))
    files.append(File.generated(config, "reference/redoc.standalone.js", abs_src_path=str(REDOC)))
    return files
