"""A local `mlflow server` process: started in its own process group, waited for until /health answers, stopped
(or killed outright) with all its workers. `accelbench ui` serves the UI with it; the tests run a real tracking
server with it (killed and restarted mid-run)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from suite.errors import RunError

LOOPBACK = "127.0.0.1"
# MLflow 3's server starts job-runner processes (huey consumers, one per GenAI job kind: judges, prompt optimisation,
# trace rollups), each importing MLflow: about 7 processes and 20 CPU-seconds per start. Benchmark runs and the
# benchmark UI never submit such jobs, so they are off unless the user's environment turns them on.
JOB_EXECUTION_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nothing listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class MlflowServer:
    """`mlflow server` for `backend_uri` on 127.0.0.1:`port`; its output goes to `log` (None: this console)."""

    def __init__(self, backend_uri: str, *, port: int = 0, workers: int = 1, artifacts: Path | None = None,
                 log: Path | None = None) -> None:
        self.backend_uri = backend_uri
        self.port = port or free_port()
        self.workers = workers
        self.artifacts = artifacts
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend_uri,
                   "--host", LOOPBACK, "--port", str(self.port), "--workers", str(self.workers)]
        if self.artifacts is not None:
            command += ["--artifacts-destination", str(self.artifacts)]
        return command

    def start(self, timeout_s: float = 120.0) -> MlflowServer:
        """Start it and wait for /health; RunError (with the log's last line) if it dies or never answers."""
        with contextlib.ExitStack() as files:
            output = files.enter_context(self.log.open("w")) if self.log is not None else None
            # Its own process group, so stopping it also stops the server's worker processes.
            self.process = subprocess.Popen(self.command(), start_new_session=True, stdout=output,
                                            stderr=subprocess.STDOUT if output is not None else None,
                                            env={JOB_EXECUTION_ENV: "false", **os.environ,
                                                 "MLFLOW_TRACKING_URI": self.backend_uri})
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                if answer.status == 200:
                    return self
            if self.process.poll() is not None:
                raise RunError(f"the MLflow server exited with code {self.process.returncode} before it was "
                               f"ready{self._last_line()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RunError(f"the MLflow server did not answer on {self.uri} within {timeout_s:.0f} s"
                               f"{self._last_line()}")
            time.sleep(0.3)

    def _last_line(self) -> str:
        if self.log is None or not self.log.is_file():
            return ""
        lines = [line for line in self.log.read_text(errors="replace").splitlines() if line.strip()]
        return f": {lines[-1].strip()} (full log: {self.log})" if lines else ""

    def wait(self) -> int:
        assert self.process is not None, "start() first"
        return self.process.wait()

    def kill(self) -> None:
        """SIGKILL the server and its workers: the outage a crashed host or the OOM killer causes."""
        self._signal(signal.SIGKILL)

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM, then SIGKILL if it has not gone within `timeout_s`."""
        if self.process is None or self.process.poll() is not None:
            return
        self._signal(signal.SIGTERM, wait_s=timeout_s)
        if self.process.poll() is None:
            self.kill()

    def _signal(self, signum: int, wait_s: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=wait_s)
