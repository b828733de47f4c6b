"""A real Prometheus server for a test: started on a free loopback port with a config the test
wrote, queried through its HTTP API, and always stopped."""

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from queue_devtools.pgcluster import free_port

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


class PrometheusError(AssertionError):
    """Prometheus refused a query or did not reach a state in time; carries its log."""


class PrometheusServer:
    def __init__(self, binary: Path, config: Path, work_dir: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = work_dir / "prometheus.log"
        self._log = self.log_path.open("wb")
        self._popen = subprocess.Popen(
            [
                str(binary),
                f"--config.file={config}",
                f"--storage.tsdb.path={work_dir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=info",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=work_dir,
        )
        self._client = httpx.Client(base_url=self.base_url, timeout=5.0)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        self.wait(self._ready, what="Prometheus /-/ready", timeout_s=START_TIMEOUT_S)

    def _ready(self) -> bool:
        try:
            return self._client.get("/-/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def wait(self, check: Callable[[], bool], *, what: str, timeout_s: float) -> None:
        """Poll ``check`` until true; fail at the deadline or if Prometheus exits."""
        deadline = time.monotonic() + timeout_s
        while not check():
            if self._popen.poll() is not None:
                raise PrometheusError(f"prometheus exited waiting for {what}\n{self.log()}")
            if time.monotonic() > deadline:
                raise PrometheusError(f"{what}: not met within {timeout_s} s\n{self.log()}")
            time.sleep(0.2)

    def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        response = self._client.get(path, params=params)
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"GET {path} {params}: {response.status_code} {body}")
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result series; raises :class:`PrometheusError` if it is invalid."""
        response = self._client.post("/api/v1/query", data={"query": promql})
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"{promql}\n-> {response.status_code} {body}")
        data = body["data"]
        assert data["resultType"] == "vector", f"{promql}: {data['resultType']}, not a vector"
        series: list[dict[str, Any]] = data["result"]
        return series

    def label_values(self, label: str, match: str) -> list[str]:
        values: list[str] = self._get(f"/api/v1/label/{label}/values", {"match[]": match})
        return values

    def targets(self) -> dict[str, list[dict[str, Any]]]:
        """``activeTargets`` and ``droppedTargets``."""
        targets: dict[str, list[dict[str, Any]]] = self._get("/api/v1/targets")
        return targets

    def alert_states(self) -> dict[str, str]:
        """Each active alert's name and state (``pending`` or ``firing``)."""
        alerts: list[dict[str, Any]] = self._get("/api/v1/alerts")["alerts"]
        return {alert["labels"]["alertname"]: alert["state"] for alert in alerts}

    def stop(self) -> None:
        self._client.close()
        if self._popen.poll() is None:
            self._popen.terminate()
            try:
                self._popen.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        self._log.close()
