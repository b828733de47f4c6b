"""``queuectl watch`` in a real terminal: tmux runs it on a 160x40 screen, the test reads the
screen as a person would (``capture-pane``), changes the queues, sees the table follow, and
presses Ctrl-C."""

import shlex
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from client.conftest import System
from helpers import BIN, wait_until
from queue_client import Client

pytestmark = pytest.mark.e2e


class Terminal:
    """A tmux server of its own (its own socket), so the test touches no other tmux."""

    def __init__(self) -> None:
        tmux = shutil.which("tmux")
        assert tmux is not None, "tmux is needed for the terminal tests"
        self._tmux = tmux
        self._socket = f"queuectl-test-{uuid.uuid4().hex[:8]}"

    def _run(self, *args: str) -> str:
        result = subprocess.run(
            [self._tmux, "-L", self._socket, *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return result.stdout

    def start(self, command: str) -> None:
        self._run("new-session", "-d", "-x", "160", "-y", "40", "-s", "t", command)

    def screen(self) -> str:
        return self._run("capture-pane", "-p", "-t", "t")

    def press(self, key: str) -> None:
        self._run("send-keys", "-t", "t", key)

    def close(self) -> None:
        try:
            socket_path = self._run("display-message", "-p", "#{socket_path}").strip()
        except subprocess.CalledProcessError:  # no server: never started, or gone already
            return
        subprocess.run(
            [self._tmux, "-L", self._socket, "kill-server"],
            capture_output=True,
            timeout=10,
            check=False,
        )
        Path(socket_path).unlink(missing_ok=True)  # a killed server leaves its socket behind


@pytest.fixture(name="terminal")
def fx_terminal() -> Iterator[Terminal]:
    terminal = Terminal()
    yield terminal
    terminal.close()


def _row(screen: str, queue: str) -> list[str]:
    """The cells of ``queue``'s row in the table on ``screen``; [] when not shown."""
    for line in screen.splitlines():
        cells = line.split()
        if cells and cells[0] == queue:
            return cells
    return []


def test_watch_shows_the_queues_live_and_leaves_on_ctrl_c(
    system: System, client: Client, terminal: Terminal, tmp_path: Path
) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"  # no worker serves it: its jobs stay due
    script = tmp_path / "watch.sh"
    script.write_text(
        f"export QUEUE_URL={shlex.quote(system.url)} QUEUE_API_KEY={shlex.quote(system.key)}\n"
        f"export XDG_CONFIG_HOME={shlex.quote(str(tmp_path))} TERM=xterm-256color\n"
        # tmux started from a process without a terminal exports its default size (80x24) as
        # COLUMNS and LINES, which would override the pane's real 160x40.
        "unset COLUMNS LINES\n"
        # Ctrl-C reaches the whole foreground group: the shell survives it (a trap, unlike an
        # ignored signal, is not inherited) to report queuectl's exit code.
        "trap true INT\n"
        f"{shlex.quote(str(BIN / 'queuectl'))} watch --interval 0.3\n"
        'echo "queuectl exited $?"\n'
        "sleep 600\n"  # keep the pane, and what it shows, until the test ends
    )
    terminal.start(f"sh {shlex.quote(str(script))}")
    last = ""

    def shows(check: str | None = None, *, row: tuple[str, int, str] | None = None) -> bool:
        nonlocal last
        last = terminal.screen()
        if check is not None:
            return check in last
        assert row is not None
        name, column, value = row
        cells = _row(last, name)
        return len(cells) > column and cells[column] == value

    def until(check: Callable[[], bool], what: str) -> None:
        try:
            wait_until(check, what=what, timeout_s=20)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the screen:\n{last}") from None

    until(lambda: shows("QUEUE"), "the queues table")
    assert "DONE/MIN" in last, last
    assert system.url in last
    assert "1 live worker(s)" in last

    for n in range(3):
        client.enqueue("noop", {"n": n}, queue=queue)
    until(lambda: shows(row=(queue, 1, "3")), f"{queue} with 3 due")
    client.pause_queue(queue)
    until(lambda: shows(row=(queue, 8, "paused")), f"{queue} paused")

    done = [client.enqueue("answer", {"q": n}).job.id for n in range(2)]
    for job_id in done:
        client.wait(job_id, timeout_s=20)
    until(lambda: shows(row=("default", 6, "2")), "default's 2 jobs done in the last minute")
    assert "Traceback" not in last

    terminal.press("C-c")
    until(lambda: shows("queuectl exited 0"), "a clean exit on Ctrl-C")
    assert "Traceback" not in last
    assert "KeyboardInterrupt" not in last
