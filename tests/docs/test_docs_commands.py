"""Every shell command of the documentation (the ``console``, ``bash``, ``sh`` and ``shell``
blocks of docs/ and README.md) is checked here against the code, without a cluster or a running
system: ``make`` targets against the Makefile, ``docker compose`` services against compose.yaml,
``kubectl`` paths, names and labels against deploy/k8s, ``queuectl`` and ``queue-keys`` against
their own parsers, ``curl`` against the API's OpenAPI document, and every variable a command sets
against the settings the processes read. (test_docs_examples runs the first job's commands for
real.)

A command none of these can check must be in ``UNCHECKED``, with the reason: a new command that
no check understands fails here instead of going unread."""

import contextlib
import io
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import click
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "docs" / "_hooks"))

import docs_reference  # noqa: E402 - from the hooks directory, put on the path above

PAGES = [*sorted((REPO_ROOT / "docs").rglob("*.md")), REPO_ROOT / "README.md"]
SHELL_INFOS = {"console", "shell-session", "bash", "sh", "shell", "zsh"}
# The transcript styles: a command follows a prompt, every other line is its output.
PROMPTED_INFOS = {"console", "shell-session"}
FENCE = re.compile(
    r"^(?P<indent>[ ]*)(?P<fence>```+)[ ]*(?P<info>[^\n`]*)\n"
    r"(?P<body>.*?)^(?P=indent)(?P=fence)[ ]*$",
    re.MULTILINE | re.DOTALL,
)
ASSIGNMENT = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$", re.DOTALL)
SUBSTITUTION = re.compile(r"^(?P<name>[A-Za-z_]\w*)=\$\((?P<inner>.*)\)$", re.DOTALL)
VARIABLE = re.compile(r"\$(?:\{(?P<braced>\w+)\}|(?P<bare>\w+))")
# Where the examples point curl; only the path and the query are checked.
EXAMPLE_ORIGIN = "http://127.0.0.1:8080"

# Commands no check here can read, by their exact text, each with why. An entry that no page
# uses any more fails test_every_unchecked_command_is_still_in_the_docs.
UNCHECKED: dict[str, str] = {
    "source /tmp/local-docker/env.sh": (
        "loads one machine's Docker engine settings; the path is that machine's, not ours"
    ),
    "tail -n 1": "a POSIX tool keeping the last line of queue-keys' output, nothing of ours",
    "tail -n1": "the same, in the prose",
}
# Variables the examples set that are not settings of ours, each with why.
OTHER_VARIABLES: dict[str, str] = {
    "PYTHONPATH": "Python's own module search path, here to import the docs' handlers",
}


@dataclass
class Block:
    """One shell block: its commands, and the shell variables they assign as they go."""

    where: str
    commands: list[str]
    variables: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Command:
    where: str
    text: str
    # The commands of the block after this one (a variable they use is a shell variable).
    later: str
    block: Block


def _blocks() -> Iterator[Block]:
    for page in PAGES:
        text = page.read_text()
        for fence in FENCE.finditer(text):
            info = fence["info"].strip().lower()
            if info.split(" ", 1)[0] not in SHELL_INFOS:
                continue
            line = text.count("\n", 0, fence.start()) + 1
            body = "\n".join(
                each.removeprefix(fence["indent"]) for each in fence["body"].splitlines()
            )
            where = f"{page.relative_to(REPO_ROOT)}:{line}"
            yield Block(where, _commands(body, prompted=info in PROMPTED_INFOS))


def _commands(body: str, *, prompted: bool) -> list[str]:
    """The block's commands, continuation lines joined, comments left out."""
    commands: list[str] = []
    lines = iter(body.splitlines())
    for line in lines:
        if prompted and not line.startswith("$ "):
            continue  # output
        command = line.removeprefix("$ ") if prompted else line
        while command.endswith("\\"):
            command = command[:-1] + " " + next(lines, "").strip()
        command = command.strip()
        if command and not command.startswith("#"):  # shlex drops the comment after one
            commands.append(command)
    return commands


def _every_command() -> list[Command]:
    found = []
    for block in _blocks():
        for index, text in enumerate(block.commands):
            later = "\n".join(block.commands[index + 1 :])
            found.append(Command(f"{block.where} `{text[:60]}`", text, later, block))
    return found


COMMANDS = _every_command()


# -- what the checks compare with -----------------------------------------------------------


@cache
def _settings_variables() -> frozenset[str]:
    return frozenset(docs_reference.settings_variables())


@cache
def _queuectl_variables() -> frozenset[str]:
    from queue_client.cli.config import KEY_ENV, URL_ENV  # noqa: PLC0415

    return frozenset({URL_ENV, KEY_ENV})


@cache
def _makefile() -> tuple[frozenset[str], str]:
    text = (REPO_ROOT / "Makefile").read_text()
    targets = frozenset(re.findall(r"^([A-Za-z0-9_.-]+):", text, re.MULTILINE))
    return targets, text


@cache
def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())
    return loaded


@cache
def _manifests() -> list[dict[str, Any]]:
    """Every Kubernetes object under deploy/k8s but the example secrets (which a reader
    replaces with kubectl create secret, the command checked against the rest)."""
    objects = []
    for path in sorted((REPO_ROOT / "deploy" / "k8s").rglob("*.yaml")):
        if path.name == "secret.example.yaml":
            continue
        objects += [doc for doc in yaml.safe_load_all(path.read_text()) if isinstance(doc, dict)]
    return objects


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@cache
def _openapi() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(docs_reference.openapi_document())
    return document


# -- the checks: each returns what is wrong, or nothing -------------------------------------


def _check_make(argv: list[str], _: Command) -> list[str]:
    targets, text = _makefile()
    problems = []
    for arg in argv[1:]:
        if assignment := ASSIGNMENT.match(arg):
            if f"$({assignment['name']})" not in text:
                problems.append(f"the Makefile does not use the variable {assignment['name']}")
        elif arg.startswith("-"):
            problems.append(f"make option {arg}: no check reads it")
        elif arg not in targets:
            problems.append(f"the Makefile has no target {arg!r}")
    return problems


def _check_queuectl(argv: list[str], _: Command) -> list[str]:
    """Parses the arguments with queuectl's own click commands: names, types and values."""
    from queue_client.cli.main import cli  # noqa: PLC0415

    command: click.Command = cli
    context = click.Context(cli, info_name="queuectl")
    rest = argv[1:]
    while isinstance(command, click.Group):
        if not rest or rest[0].startswith("-"):
            return [f"expected a command after {context.command_path!r}"]
        name, *rest = rest
        sub = command.get_command(context, name)
        if sub is None:
            return [f"{context.command_path} has no command {name!r}"]
        if isinstance(sub, click.Group):
            context = click.Context(sub, info_name=name, parent=context)
            command = sub
            continue
        try:  # parses and converts every argument as a run would, without running
            sub.make_context(name, rest, parent=context)
        except click.ClickException as error:
            return [f"{context.command_path} {name}: {error.format_message()}"]
        return []
    return []


def _check_queue_keys(argv: list[str], _: Command) -> list[str]:
    """Parses the arguments with queue-keys' own argparse parser, and checks the scopes."""
    from queue_api import keys_cli  # noqa: PLC0415
    from queue_core.keys import ALL_SCOPES  # noqa: PLC0415

    parser = keys_cli._parser()  # noqa: SLF001 - the program's parser, without running it
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        try:
            parsed = parser.parse_args(argv[1:])
        except SystemExit:
            return [errors.getvalue().strip().splitlines()[-1]]
    unknown = [scope for scope in getattr(parsed, "scopes", None) or [] if scope not in ALL_SCOPES]
    return [f"queue-keys has no scope {scope!r}" for scope in unknown]


@dataclass
class _Request:
    method: str | None = None
    url: str | None = None
    headers: list[str] = field(default_factory=list)
    data: bool = False


def _curl_request(argv: list[str], command: Command) -> _Request | str:
    """What a curl command asks for, or why that cannot be read."""
    request = _Request()
    args = iter(argv[1:])
    for arg in args:
        if arg in ("-X", "--request"):
            request.method = next(args).lower()
        elif arg in ("-H", "--header"):
            request.headers.append(next(args).split(":", 1)[0].strip())
        elif arg in ("-d", "--data", "--data-raw", "--data-binary", "--json"):
            request.data = True
            next(args)
        elif arg.startswith("-"):
            if arg not in ("-s", "--silent", "-S", "-f", "--fail", "-i", "-v"):
                return f"curl option {arg}: no check reads it"
        elif request.url is None:
            request.url = _substitute(arg, command)
        else:
            return f"two URLs for one curl: {request.url} and {arg}"
    return request if request.url is not None else "curl without a URL"


def _check_curl(argv: list[str], command: Command) -> list[str]:
    """The method, the path, the query parameters and the headers against the API's OpenAPI
    document; variables from earlier in the block are substituted."""
    request = _curl_request(argv, command)
    if isinstance(request, str):
        return [request]
    method = request.method or ("post" if request.data else "get")
    url = request.url or ""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    # Literal paths first: /v1/jobs/retry before /v1/jobs/{job_id}.
    for template, item in sorted(_openapi()["paths"].items(), key=lambda p: p[0].count("{")):
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, parts.path) and method in item:
            operation = item[method]
            break
    else:
        return [f"{method.upper()} {parts.path} is not in the API's OpenAPI document"]
    parameters = {(p["in"], p["name"].lower()) for p in operation.get("parameters", [])}
    problems = [
        f"{method.upper()} {template} takes no query parameter {name!r}"
        for name, _ in parse_qsl(parts.query, keep_blank_values=True)
        if ("query", name.lower()) not in parameters
    ]
    problems += [
        f"{method.upper()} {template} reads no header {header!r}"
        for header in request.headers
        if header.lower() not in ("authorization", "content-type", "accept")
        and ("header", header.lower()) not in parameters
    ]
    return problems


def _check_docker(argv: list[str], command: Command) -> list[str]:
    if argv[1:2] != ["compose"]:
        return [f"docker {' '.join(argv[1:2])}: only docker compose is checked"]
    services = set(_compose()["services"])
    rest = argv[2:]
    if not rest:
        return ["docker compose without a command"]
    verb, *rest = rest
    if verb in ("exec", "run"):
        positional = _without_options(rest, {"-e", "--env", "-u", "--user", "-w"})
        if not positional or positional[0] not in services:
            return [f"compose.yaml has no service {positional[:1]}"]
        # The rest runs inside the service's container: checked as a command of its own.
        return _check_argv(positional[1:], command) if positional[1:] else []
    if verb in ("up", "build", "down", "logs", "ps", "pull", "restart", "stop", "start"):
        names = _without_options(rest, {"--scale", "-t", "--timeout"})
        problems = [
            f"compose.yaml has no service {name!r}" for name in names if name not in services
        ]
        scales = [rest[i + 1] for i, arg in enumerate(rest[:-1]) if arg == "--scale"]
        problems += [
            f"compose.yaml has no service {scale.split('=')[0]!r}"
            for scale in scales
            if scale.split("=")[0] not in services
        ]
        return problems
    return [f"docker compose {verb}: no check reads it"]


def _without_options(args: list[str], taking_value: set[str]) -> list[str]:
    """The positional arguments, up to the first one (what follows belongs to it)."""
    positional: list[str] = []
    skip = False
    for arg in args:
        if positional:
            positional.append(arg)
        elif skip:
            skip = False
        elif arg in taking_value:
            skip = True
        elif not arg.startswith("-"):
            positional.append(arg)
    return positional


@dataclass(frozen=True)
class _Cluster:
    """What deploy/k8s declares: namespaces, labels ("key=value"), objects (kind, name), and
    every string value (the secrets' mount paths among them)."""

    namespaces: frozenset[str]
    labels: frozenset[str]
    objects: frozenset[tuple[str, str]]
    values: frozenset[str]


@cache
def _cluster() -> _Cluster:
    manifests = _manifests()
    return _Cluster(
        namespaces=frozenset(
            {m["metadata"]["name"] for m in manifests if m.get("kind") == "Namespace"}
            | {m["namespace"] for m in manifests if isinstance(m.get("namespace"), str)}
        ),
        labels=frozenset(
            f"{key}={value}"
            for m in manifests
            for key, value in (m.get("metadata", {}).get("labels") or {}).items()
        ),
        objects=frozenset(
            (str(m.get("kind")).lower(), str(m.get("metadata", {}).get("name"))) for m in manifests
        ),
        values=frozenset(value for m in manifests for value in _strings(m)),
    )


def _check_kubectl(argv: list[str], command: Command) -> list[str]:
    """Paths exist; namespaces, objects, labels and secrets are the manifests' own."""
    cluster = _cluster()
    problems: list[str] = []
    positional: list[str] = []
    args = iter(_substitute(arg, command) for arg in argv[1:])
    for arg in args:
        if arg in ("-n", "--namespace"):
            if (namespace := next(args)) not in cluster.namespaces:
                problems.append(f"deploy/k8s has no namespace {namespace!r}")
        elif arg in ("-k", "--kustomize", "-f", "--filename"):
            path = REPO_ROOT / next(args)
            path = path / "kustomization.yaml" if arg in ("-k", "--kustomize") else path
            if not path.exists():
                problems.append(f"{path.relative_to(REPO_ROOT)} does not exist")
        elif arg in ("-l", "--selector"):
            problems += [
                f"no object of deploy/k8s has the label {pair}"
                for pair in next(args).split(",")
                if pair not in cluster.labels
            ]
        elif arg.startswith("--from-literal="):
            key = arg.removeprefix("--from-literal=").split("=", 1)[0]
            secret = positional[-1] if positional else ""
            if f"/run/secrets/{secret}/{key}" not in cluster.values:
                problems.append(f"no pod of deploy/k8s reads {key} of the secret {secret!r}")
        elif not arg.startswith("-"):
            positional.append(arg)
    return problems + _check_kubectl_verb(positional, cluster)


def _check_kubectl_verb(positional: list[str], cluster: _Cluster) -> list[str]:
    match positional:
        case ["apply"]:
            return []
        case ["create", "namespace", name]:
            return [] if name in cluster.namespaces else [f"deploy/k8s has no namespace {name!r}"]
        case ["create", "secret", "generic", name]:
            mounted = any(value.startswith(f"/run/secrets/{name}/") for value in cluster.values)
            return [] if mounted else [f"no pod of deploy/k8s mounts the secret {name!r}"]
        case ["delete" | "get" | "describe" | "logs" | "wait" | "scale", *named]:
            pairs = [tuple(each.split("/", 1)) for each in named if "/" in each]
            if len(named) == 2 and "/" not in named[0]:
                pairs = [(named[0], named[1])]
            if not pairs:
                return [f"kubectl {positional[0]}: which object?"]
            return [
                f"deploy/k8s has no {kind} {name!r}"
                for kind, name in pairs
                if (kind.lower(), name) not in cluster.objects
            ]
    return [f"kubectl {' '.join(positional)}: no check reads it"]


def _check_kind(argv: list[str], _: Command) -> list[str]:
    if argv[1:3] != ["load", "docker-image"]:
        return [f"kind {' '.join(argv[1:3])}: no check reads it"]
    images = {
        str(service.get("image", "")).split(":")[0] for service in _compose()["services"].values()
    }
    return [
        f"compose.yaml builds no image {image!r}"
        for image in argv[3:]
        if image.split(":")[0] not in images
    ]


def _check_export(argv: list[str], command: Command) -> list[str]:
    problems = []
    for arg in argv[1:]:
        assignment = ASSIGNMENT.match(arg)
        if assignment is None:
            problems.append(f"export {arg}: not an assignment")
        else:
            problems += _check_variable(assignment["name"], assignment["value"], command)
    return problems


@cache
def _help_of(program: str) -> str:
    binary = Path(sys.executable).parent / program
    return subprocess.run(
        [binary, "--help"], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def _check_options_in_help(argv: list[str], _: Command) -> list[str]:
    """Programs without subcommands: every option the command gives is in their --help."""
    program = Path(argv[0]).name
    options = [arg.split("=", 1)[0] for arg in argv[1:] if arg.startswith("-")]
    return [
        f"{program} has no option {option}"
        for option in options
        if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", _help_of(program))
    ]


CHECKS: dict[str, Callable[[list[str], Command], list[str]]] = {
    "make": _check_make,
    "queuectl": _check_queuectl,
    "queue-keys": _check_queue_keys,
    "queue-migrate": _check_options_in_help,
    "queue-login-roles": _check_options_in_help,
    "curl": _check_curl,
    "docker": _check_docker,
    "kubectl": _check_kubectl,
    "kind": _check_kind,
    "export": _check_export,
}


# -- commands, pipelines and variables ------------------------------------------------------


def _substitute(text: str, command: Command) -> str:
    def value(match: re.Match[str]) -> str:
        name = match["braced"] or match["bare"]
        return command.block.variables.get(name, match[0])

    return VARIABLE.sub(value, text)


def _check_variable(name: str, value: str, command: Command) -> list[str]:
    """A variable a command sets is a setting of ours, queuectl's, compose.yaml's, or the
    block's own shell variable (a later command of the block uses it)."""
    command.block.variables[name] = _substitute(value, command)
    known = (
        name in _settings_variables()
        or name in _queuectl_variables()
        or name in OTHER_VARIABLES
        or re.search(rf"\$\{{{name}\b", (REPO_ROOT / "compose.yaml").read_text()) is not None
        or re.search(rf"\$\{{?{name}\b", command.later) is not None
    )
    return [] if known else [f"{name} is read by no settings class, queuectl or compose.yaml"]


def _check_argv(argv: list[str], command: Command) -> list[str]:
    """One simple command: leading assignments, then a program and its arguments."""
    problems = []
    while argv and (assignment := ASSIGNMENT.match(argv[0])):
        problems += _check_variable(assignment["name"], assignment["value"], command)
        argv = argv[1:]
    if not argv:
        return problems
    text = shlex.join(argv)
    if text in UNCHECKED:
        return problems
    check = CHECKS.get(Path(argv[0]).name)
    if check is None:
        return [*problems, f"no check reads {text!r}: check it, or add it to UNCHECKED"]
    return problems + check(argv, command)


def check(command: Command) -> list[str]:
    """What is wrong with a command of the docs, as a list of messages."""
    text = command.text
    if substitution := SUBSTITUTION.match(text):  # NAME=$(pipeline)
        inner = Command(command.where, substitution["inner"], command.later, command.block)
        return check(inner) + _check_variable(substitution["name"], "", command)
    lexer = shlex.shlex(text, posix=True, punctuation_chars="|;&")
    lexer.whitespace_split = True
    problems: list[str] = []
    argv: list[str] = []
    for token in [*lexer, ";"]:
        if token in ("|", "||", "&&", ";", "&"):
            problems += _check_argv(argv, command)
            argv = []
        else:
            argv.append(token)
    return problems


# -- the tests -----------------------------------------------------------------------------


def test_the_shell_blocks_are_found() -> None:
    assert len(COMMANDS) >= 40, [c.text for c in COMMANDS]
    for program in ("make", "curl", "kubectl", ".venv/bin/queuectl", "queue-keys", "docker"):
        assert any(c.text.startswith(program) for c in COMMANDS), program


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_every_shell_command_of_the_docs_matches_the_code(command: Command) -> None:
    # The block's variables are set as its commands are checked, in order.
    for earlier in command.block.commands[: command.block.commands.index(command.text)]:
        check(Command(command.where, earlier, "", command.block))
    assert check(command) == []


def test_every_unchecked_command_is_still_in_the_docs() -> None:
    written = "\n".join([*(c.text for c in COMMANDS), *(text for _, text in _inline_commands())])
    stale = [text for text in UNCHECKED if text not in written]
    assert not stale, f"UNCHECKED names commands no page has any more: {stale}"
    unused = [name for name in OTHER_VARIABLES if not re.search(rf"\b{name}=", written)]
    assert not unused, f"OTHER_VARIABLES names variables no page sets any more: {unused}"


@pytest.mark.parametrize(
    ("text", "wrong"),
    [
        ("make no-such-target", "no target"),
        ("make bench NO_SUCH_ARGS=1", "does not use the variable"),
        (".venv/bin/queuectl enqueue send_email --no-such-option 1", "No such option"),
        (".venv/bin/queuectl no-such-command", "no command"),
        ("queuectl list --status sleeping", "sleeping"),
        ("queue-keys create --name a --scopes jobs:fly", "no scope"),
        ("queue-keys create --scopes jobs:read", "required"),
        ("curl -s localhost:8080/v1/nothing", "not in the API's OpenAPI"),
        ("curl -s -X DELETE localhost:8080/v1/queues", "not in the API's OpenAPI"),
        ("curl -s 'localhost:8080/v1/jobs?colour=red'", "no query parameter"),
        ("curl -s -H 'X-Nope: 1' localhost:8080/v1/jobs", "no header"),
        ("docker compose exec -T no-such-service true", "no service"),
        ("docker compose exec -T api queue-keys nope", "invalid choice"),
        ("docker compose up --scale nobody=2", "no service"),
        ("kubectl apply -k deploy/k8s/overlays/nowhere", "does not exist"),
        ("kubectl apply -k deploy/k8s/overlays/prod -l task-queue/step=never", "label"),
        ("kubectl -n elsewhere delete job queue-migrate", "no namespace"),
        ("kubectl -n task-queue wait --for=condition=complete job/no-such-job", "no job"),
        (
            (
                "kubectl -n task-queue create secret generic queue-database-api "
                "--from-literal=PASSWORD=x"
            ),
            "reads PASSWORD",
        ),
        ("kind load docker-image someone-else:dev", "no image"),
        ("NO_SUCH_SETTING=1 make run", "NO_SUCH_SETTING"),
        ("export WORKER_NO_SUCH=1", "WORKER_NO_SUCH"),
        ("rm -rf site", "no check reads"),
        ("KEY=$(docker compose exec -T api queue-keys create --name me | tail -n 1)", "required"),
    ],
)
def test_the_checks_find_what_is_wrong(text: str, wrong: str) -> None:
    command = Command("test", text, "", Block("test", [text]))
    problems = check(command)
    assert any(wrong in problem for problem in problems), problems


# -- commands in the prose -----------------------------------------------------------------

INLINE = re.compile(r"(?<!`)`(?P<code>[^`\n]+)`(?!`)")
INLINE_PROGRAMS = re.compile(
    r"^(make|docker compose|kubectl|(\.venv/bin/)?queuectl|queue-keys|queue-migrate"
    r"|queue-login-roles) "
)
# A synopsis, not a command: [optional], alternatives (\| in a table), <placeholders>, NAMES.
SYNOPSIS = re.compile(r"[\[\]<>…]|\\\||(?<![=\w])[A-Z]+\b")
# Inline commands no check reads, each with why; stale entries fail too.
UNCHECKED_INLINE: dict[str, str] = {
    "kubectl rollout restart": "names the kubectl verb, for no object in particular",
}


def _inline_commands() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        prose = FENCE.sub("", page.read_text())
        for span in INLINE.finditer(prose):
            code = span["code"].strip()
            if INLINE_PROGRAMS.match(code):
                found.append((f"{page.relative_to(REPO_ROOT)} `{code[:60]}`", code))
    return found


def _check_queuectl_names(text: str) -> list[str]:
    """A synopsis of queuectl in the prose: its commands and options exist."""
    from queue_client.cli.main import cli  # noqa: PLC0415

    command: click.Command = cli
    context = click.Context(cli, info_name="queuectl")
    problems = []
    for token in [t for t in re.split(r"[\s\[\]]+", text) if t][1:]:
        if token.startswith("-"):
            option = token.split("=", 1)[0]
            options = {name for p in command.params for name in (*p.opts, *p.secondary_opts)}
            if option not in options:
                problems.append(f"{context.command_path} has no option {option}")
        elif isinstance(command, click.Group) and re.fullmatch(r"[a-z-]+(\\\|[a-z-]+)*", token):
            names = token.split("\\|")
            found = [command.get_command(context, name) for name in names]
            problems += [
                f"{context.command_path} has no command {name!r}"
                for name, sub in zip(names, found, strict=True)
                if sub is None
            ]
            if found[0] is None:
                return problems
            context = click.Context(found[0], info_name=names[0], parent=context)
            command = found[0]
    return problems


def check_inline(text: str) -> list[str]:
    if text in UNCHECKED_INLINE:
        return []
    program = Path(text.split(" ", 1)[0]).name
    if program == "queuectl":
        return _check_queuectl_names(text)
    if program in ("queue-migrate", "queue-login-roles"):  # a synopsis has the option names
        return _check_options_in_help(text.split(), Command("inline", text, "", Block("", [])))
    if SYNOPSIS.search(text):
        return [f"a synopsis no check reads: {text!r}; add it to UNCHECKED_INLINE"]
    return check(Command("inline", text, "", Block("inline", [text])))


INLINE_COMMANDS = _inline_commands()


@pytest.mark.parametrize(("where", "text"), INLINE_COMMANDS, ids=[w for w, _ in INLINE_COMMANDS])
def test_every_command_in_the_prose_matches_the_code(where: str, text: str) -> None:
    assert check_inline(text) == [], where


def test_the_prose_commands_are_found_and_the_unchecked_ones_still_there() -> None:
    assert len(INLINE_COMMANDS) >= 30
    written = {text for _, text in INLINE_COMMANDS}
    stale = [text for text in UNCHECKED_INLINE if text not in written]
    assert not stale, f"UNCHECKED_INLINE names commands no page has any more: {stale}"


@pytest.mark.parametrize(
    ("text", "wrong"),
    [
        ("queuectl enqueue TYPE [--no-such-flag]", "no option --no-such-flag"),
        ("queuectl cancel\\|resurrect ID", "no command 'resurrect'"),
        ("queuectl keys create NAME --scopes x", "no option --scopes"),
        ("queue-migrate --sideways 3", "no option --sideways"),
        ("kubectl rollout undo", "no check reads"),
        ("docker compose restart api nobody", "no service 'nobody'"),
    ],
)
def test_the_prose_checks_find_what_is_wrong(text: str, wrong: str) -> None:
    problems = check_inline(text)
    assert any(wrong in problem for problem in problems), problems
