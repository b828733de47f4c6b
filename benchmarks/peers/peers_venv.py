"""The peers' own virtualenv: created on demand, kept apart from the project's.

PgQueuer and Procrastinate are benchmarked in a virtualenv of their own
(``benchmarks/.peers-venv``, or ``$PEERS_VENV``) so that their dependencies never meet the
project's lock file. This module uses the standard library only: any Python 3.11+ can run it.

    python benchmarks/peers/peers_venv.py      # create or update the venv, print its python

The venv is (re)built when it is missing or when ``requirements.txt`` changed since it was
last built (a hash is kept inside the venv), under a file lock so that concurrent callers
build it once. It is made with ``uv`` when that is on PATH, else with ``venv`` and ``pip``:

    uv venv --python <this interpreter> benchmarks/.peers-venv
    uv pip install --python benchmarks/.peers-venv/bin/python -r benchmarks/peers/requirements.txt

The benchmark scripts call :func:`reexec_in_venv` first, so running them with any Python
(the project's, say) re-executes them with the peers' interpreter.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

PEERS_DIR = Path(__file__).resolve().parent
REQUIREMENTS = PEERS_DIR / "requirements.txt"
VENV = Path(os.environ.get("PEERS_VENV", PEERS_DIR.parent / ".peers-venv")).resolve()
_STAMP = ".requirements.sha256"


def venv_python() -> Path:
    """The peers' interpreter (which may not exist yet)."""
    return VENV / "bin" / "python"


def _requirements_hash() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def _is_current() -> bool:
    stamp = VENV / _STAMP
    return (
        venv_python().exists()
        and stamp.exists()
        and stamp.read_text().strip() == _requirements_hash()
    )


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    # Outside the work tree, so that nothing but the venv itself needs ignoring.
    key = hashlib.sha256(str(VENV).encode()).hexdigest()[:16]
    with (Path(tempfile.gettempdir()) / f"peers-venv-{key}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _base_interpreter() -> str:
    """The interpreter the venv is built on: ours, or the one our own venv was built on."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return base if Path(base).exists() else sys.executable


def _build() -> None:
    print(f"peers_venv: building {VENV} from {REQUIREMENTS.name}", file=sys.stderr, flush=True)
    if VENV.exists():
        shutil.rmtree(VENV)
    python = str(venv_python())
    if uv := shutil.which("uv"):
        create = [uv, "venv", "--quiet", "--python", _base_interpreter(), str(VENV)]
        install = [uv, "pip", "install", "--quiet", "--python", python, "-r", str(REQUIREMENTS)]
    else:
        create = [_base_interpreter(), "-m", "venv", str(VENV)]
        install = [python, "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)]
    for command in (create, install):
        # Whatever the installers print goes to stderr: stdout carries the scripts' JSON.
        subprocess.run(command, check=True, stdout=sys.stderr)
    (VENV / _STAMP).write_text(_requirements_hash() + "\n")


def ensure_venv() -> Path:
    """Create or update the peers' venv if needed; return its interpreter."""
    if not _is_current():
        with _lock():
            if not _is_current():
                _build()
    return venv_python()


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV


def reexec_in_venv() -> None:
    """Unless already there, re-execute the running script with the peers' interpreter."""
    if in_venv():
        return
    python = str(ensure_venv())
    script = str(Path(sys.argv[0]).resolve())
    os.execv(python, [python, script, *sys.argv[1:]])  # noqa: S606 (ourselves, no shell)


if __name__ == "__main__":
    print(ensure_venv())
