"""Where the tests' ``prometheus`` and ``promtool`` come from, in order of preference:

1. ``PROMETHEUS_BIN`` (and ``PROMTOOL_BIN``, else the ``promtool`` beside it): binaries you chose.
2. ``PATH``, then ``/usr/bin``.
3. Debian's ``prometheus`` package, installed once when the tests run as root with apt-get
   (the case on CI's machines, which start without it).

The install holds a file lock, so two test runs at once install it once, and it stops the
package from starting its own daemon: the tests never use that daemon, and one left listening
on port 9090 would outlive the run. When none of this works the tests fail and say what to
install; they never skip, because a skipped proof proves nothing.
"""

import contextlib
import fcntl
import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEBIAN_PACKAGE = "prometheus"
APT_TIMEOUT_S = 300.0
LOCK_PATH = Path(tempfile.gettempdir()) / "queue-tests-prometheus-install.lock"
# invoke-rc.d asks this script whether a package may start its service; 101 means "no".
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
POLICY_DENY_ALL = "#!/bin/sh\n# Written by the task queue's tests during an install.\nexit 101\n"

HOW_TO_GET_IT = (
    "install Debian's prometheus package (`apt-get install prometheus`, which brings "
    "/usr/bin/prometheus and /usr/bin/promtool) or point PROMETHEUS_BIN (and PROMTOOL_BIN) "
    "at Prometheus binaries"
)


class PrometheusUnavailableError(RuntimeError):
    """Neither binary could be found or installed; the message says what to install."""


@dataclass(frozen=True)
class PrometheusBinaries:
    prometheus: Path
    promtool: Path


def _from_env() -> PrometheusBinaries | None:
    server = os.environ.get("PROMETHEUS_BIN")
    if not server:
        return None
    tool = os.environ.get("PROMTOOL_BIN") or str(Path(server).with_name("promtool"))
    found = PrometheusBinaries(Path(server), Path(tool))
    for path in (found.prometheus, found.promtool):
        if not os.access(path, os.X_OK):
            raise PrometheusUnavailableError(
                f"PROMETHEUS_BIN/PROMTOOL_BIN: {path} is not an executable file; {HOW_TO_GET_IT}"
            )
    return found


def _on_system() -> PrometheusBinaries | None:
    def locate(name: str) -> Path | None:
        on_path = shutil.which(name) or shutil.which(name, path="/usr/bin")
        return Path(on_path) if on_path else None

    server, tool = locate("prometheus"), locate("promtool")
    return PrometheusBinaries(server, tool) if server and tool else None


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    with LOCK_PATH.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        yield


@contextlib.contextmanager
def _services_never_start() -> Iterator[None]:
    """Deny every service start for the duration of the install, unless a policy of someone
    else's already exists (Docker images ship one that denies everything)."""
    if POLICY_RC_D.exists() and POLICY_RC_D.read_text() != POLICY_DENY_ALL:
        yield
        return
    POLICY_RC_D.write_text(POLICY_DENY_ALL)
    POLICY_RC_D.chmod(0o755)
    try:
        yield
    finally:
        POLICY_RC_D.unlink(missing_ok=True)


def _apt(args: list[str]) -> None:
    env = {
        **os.environ,
        "DEBIAN_FRONTEND": "noninteractive",
        # Without systemd, invoke-rc.d consults the runlevel; single-user starts no service.
        "RUNLEVEL": "1",
    }
    try:
        done = subprocess.run(
            ["apt-get", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=APT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise PrometheusUnavailableError(
            f"apt-get {' '.join(args)} took over {APT_TIMEOUT_S:.0f} s; {HOW_TO_GET_IT}"
        ) from exc
    if done.returncode != 0:
        raise PrometheusUnavailableError(
            f"apt-get {' '.join(args)} exited {done.returncode}: "
            f"{(done.stderr or done.stdout).strip()[-2000:]}\n{HOW_TO_GET_IT}"
        )


def _install_debian_package() -> None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        raise PrometheusUnavailableError(
            f"prometheus/promtool not found and not running as root to install them; "
            f"{HOW_TO_GET_IT}"
        )
    if shutil.which("apt-get") is None:
        raise PrometheusUnavailableError(
            f"prometheus/promtool not found and there is no apt-get to install them; "
            f"{HOW_TO_GET_IT}"
        )
    with _services_never_start():
        # Wait for another apt (an unattended upgrade) rather than fail on its lock.
        wait_for_lock = ["-o", f"DPkg::Lock::Timeout={int(APT_TIMEOUT_S / 2)}"]
        _apt([*wait_for_lock, "update", "-qq"])
        _apt([*wait_for_lock, "install", "-y", "-qq", "--no-install-recommends", DEBIAN_PACKAGE])


@functools.cache
def _find_or_install() -> PrometheusBinaries | PrometheusUnavailableError:
    try:
        return _find_or_install_once()
    except PrometheusUnavailableError as exc:
        return exc  # remembered: a failed install is not tried again by every test


def prometheus_binaries() -> PrometheusBinaries:
    """The binaries to test with; installs Debian's package at most once per process. Raises
    :class:`PrometheusUnavailableError` with what to install when there is no way to get them."""
    outcome = _find_or_install()
    if isinstance(outcome, PrometheusUnavailableError):
        raise outcome
    return outcome


def _find_or_install_once() -> PrometheusBinaries:
    found = _from_env() or _on_system()
    if found is not None:
        return found
    with _install_lock():
        found = _on_system()  # another test run may have installed it while we waited
        if found is None:
            _install_debian_package()
            found = _on_system()
    if found is None:
        raise PrometheusUnavailableError(
            f"apt-get installed {DEBIAN_PACKAGE} but prometheus/promtool are still not on PATH "
            f"or in /usr/bin; {HOW_TO_GET_IT}"
        )
    return found
