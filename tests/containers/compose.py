"""The compose stack of ``compose.yaml`` on a real Docker engine, driven through the ``docker``
CLI: whichever engine ``DOCKER_HOST`` names, under a project name and image tag of its own, with
every published port chosen by the engine, so that it runs beside anything else."""

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from deploy.project import COMPOSE_FILE, REPO_ROOT

# Everything compose.yaml runs except Grafana, which only draws what Prometheus holds.
SERVICES = ("postgres", "migrate", "login-roles", "api", "worker", "mailpit", "prometheus")
IMAGES = {"api": "task-queue-api", "worker": "task-queue-worker"}
# Host port 0: the engine picks a free one, which `docker compose port` then reports.
PUBLISHED_PORT_VARIABLES = (
    "API_PUBLISHED_PORT",
    "PROMETHEUS_PUBLISHED_PORT",
    "MAILPIT_PUBLISHED_PORT",
)
BUILD_TIMEOUT_S = 600.0
UP_TIMEOUT_S = 180.0
COMMAND_TIMEOUT_S = 60.0
LOG_TAIL_LINES = 150
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class ComposeError(RuntimeError):
    pass


def docker_cli() -> str:
    docker = shutil.which("docker")
    if docker is None:
        raise ComposeError("no `docker` command on PATH: the containers tests drive the CLI")
    return docker


def engine_host() -> str:
    """The host the engine publishes ports on: this machine, unless DOCKER_HOST is remote."""
    docker_host = os.environ.get("DOCKER_HOST", "")
    if docker_host.startswith(("tcp://", "ssh://")):
        return urlsplit(docker_host).hostname or "127.0.0.1"
    return "127.0.0.1"


def parse_docker_time(text: str) -> datetime:
    """Docker's RFC 3339 timestamps carry nanoseconds, which fromisoformat cannot read."""
    match = re.fullmatch(r"(\S+?T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if match is None:
        raise ValueError(f"not a Docker timestamp: {text!r}")
    whole, fraction, zone = match.groups()
    micros = (fraction or "0")[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{whole}.{micros}{'+00:00' if zone == 'Z' else zone}")


@dataclass
class ComposeStack:
    project: str = field(default_factory=lambda: f"tq-test-{uuid.uuid4().hex[:8]}")
    docker: str = field(default_factory=docker_cli)
    build_s: float | None = None  # how long `build` took, for the report

    @property
    def tag(self) -> str:
        return self.project  # unique, so a developer's own :latest images are never replaced

    def image(self, service: str) -> str:
        return f"{IMAGES[service]}:{self.tag}"

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "TAG": self.tag, "WORKER_REPLICAS": "2"}
        env.update(dict.fromkeys(PUBLISHED_PORT_VARIABLES, "0"))
        return env

    def run(
        self, *args: str, timeout_s: float = COMMAND_TIMEOUT_S, with_stderr: bool = False
    ) -> str:
        """A docker command's output, or a ComposeError that quotes it. ``with_stderr`` for
        `docker logs`, which passes a container's stderr on as its own."""
        result = subprocess.run(
            [self.docker, *args],
            env=self._env(),
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if with_stderr else subprocess.PIPE,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if result.returncode != 0:
            raise ComposeError(
                f"`docker {' '.join(args)}` exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}{(result.stderr or '')[-3000:]}"
            )
        return result.stdout

    def compose(self, *args: str, timeout_s: float = COMMAND_TIMEOUT_S) -> str:
        # Only compose.yaml: a developer's compose.override.yaml publishes fixed ports.
        # --ansi never: the output lands in logs and reports, not on a terminal.
        return self.run(
            "compose", "--ansi", "never", "--project-name", self.project,
            "--file", str(COMPOSE_FILE), "--project-directory", str(REPO_ROOT), *args,
            timeout_s=timeout_s,
        )  # fmt: skip

    def build(self) -> None:
        started = time.monotonic()
        self.compose("build", *IMAGES, timeout_s=BUILD_TIMEOUT_S)
        self.build_s = time.monotonic() - started

    def up(self) -> None:
        # Returns once migrate has exited 0 and the others have started (depends_on).
        self.compose("up", "--detach", "--no-build", *SERVICES, timeout_s=UP_TIMEOUT_S)

    def scale_workers(self, replicas: int) -> None:
        # --no-deps: postgres and mailpit keep running, and migrate is not run again.
        self.compose(
            "up", "--detach", "--no-build", "--no-deps", "--no-recreate",
            "--scale", f"worker={replicas}", "worker",
            timeout_s=UP_TIMEOUT_S,
        )  # fmt: skip

    def down(self) -> None:
        """Containers, network, volumes and this run's image tags; the build cache stays, so
        the next run builds in seconds."""
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "10")
        built = self.run("image", "ls", "--format", "{{.Repository}}:{{.Tag}}",
                         "--filter", f"reference=*:{self.tag}").split()  # fmt: skip
        if built:  # none when the build failed
            self.run("image", "rm", *built)

    def create_api_key(self, name: str, scopes: str) -> str:
        """A new API key, made as an operator would: ``queue-keys`` in the running api
        container. Its last output line is the key."""
        output = self.compose("exec", "-T", "api", "queue-keys", "create",
                              "--name", name, "--scopes", scopes)  # fmt: skip
        return output.strip().splitlines()[-1]

    def container_ids(self, service: str) -> list[str]:
        """Running and stopped containers of a service."""
        return self.compose("ps", "--all", "--quiet", service).split()

    def inspect(self, container_id: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(self.run("inspect", container_id))
        return found[0]

    def url(self, service: str, port: int) -> str:
        published = self.compose("port", service, str(port)).strip()  # "0.0.0.0:49153"
        return f"http://{engine_host()}:{published.rsplit(':', 1)[1]}"

    def psql(self, sql: str) -> list[list[str]]:
        """Rows of a query run inside the postgres container (its port is not published)."""
        # The container's own POSTGRES_USER and POSTGRES_DB: an .env file may change them.
        script = 'exec psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -At -F "|" -c "$1"'
        out = self.compose("exec", "-T", "postgres", "sh", "-c", script, "psql", sql)
        return [line.split("|") for line in out.splitlines() if line]

    def exec_python(self, service: str, script: str) -> str:
        """What ``python -c SCRIPT`` prints in a running container of ``service``: with its
        environment and its mounted secrets, as the service's own process has them."""
        return self.compose("exec", "-T", service, "python", "-c", script)

    def logs(self, container_id: str) -> list[tuple[datetime, str]]:
        """A container's output, each line with the time the engine received it."""
        out = self.run("logs", "--timestamps", container_id, with_stderr=True)
        lines = []
        for line in out.splitlines():
            stamp, _, text = line.partition(" ")
            lines.append((parse_docker_time(stamp), text))
        return sorted(lines)  # the two streams arrive interleaved

    def all_logs(self) -> str:
        """What a failure report shows: every container's state and the tail of its output."""
        parts = [self.compose("ps", "--all")]
        parts.append(self.compose("logs", "--no-color", "--tail", str(LOG_TAIL_LINES)))
        # compose clears each log line with an escape sequence even under --ansi never.
        return ANSI_ESCAPE.sub("", "\n".join(parts))
