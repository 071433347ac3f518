"""`accelbench ui`: the MLflow UI on loopback for the store this machine's runs went to.

The store is the one `accelbench run` records into: `MLFLOW_TRACKING_URI` when set, else MLflow's default
`sqlite:///mlflow.db` in the current folder. A tracking server (`http(s)://...`) already serves its own UI, so
then only its address is printed. The server listens on 127.0.0.1 only; reach it from another machine through an
SSH tunnel (`ssh -L 5000:127.0.0.1:5000 host`), never by opening the port.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from suite.errors import BenchError, RunError
from suite.redaction import redact_uri

HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Store:
    uri: str
    remote: bool  # a tracking server with its own UI

    @property
    def sqlite_file(self) -> Path | None:
        prefix = "sqlite:///"
        return Path(self.uri[len(prefix):]) if self.uri.startswith(prefix) else None


def tracking_store() -> Store:
    import mlflow

    uri = mlflow.get_tracking_uri()
    return Store(uri, uri.startswith(("http://", "https://", "databricks")))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def check_port(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            raise BenchError(f"--port {port}: already in use on {HOST}; choose another port (--port 0 picks a "
                             f"free one)") from None


def server_command(store_uri: str, port: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store_uri, "--host", HOST,
            "--port", str(port), "--workers", str(workers)]


def _last_line(log: Path | None) -> str:
    if log is None or not log.is_file():
        return ""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return f": {lines[-1].strip()} (full log: {log})" if lines else ""


def _wait_healthy(url: str, process: subprocess.Popen, timeout_s: float, log: Path | None) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            if response.status == 200:
                return
        if process.poll() is not None:
            raise RunError(f"the MLflow server exited with code {process.returncode} before it was ready"
                           f"{_last_line(log)}")
        if time.monotonic() > deadline:
            raise RunError(f"the MLflow server did not answer on {url} within {timeout_s:.0f} s")
        time.sleep(0.3)


def serve(port: int, workers: int, announce: Callable[[str], None], *, server_log: bool = False) -> int:
    """Run the UI until Ctrl-C/SIGTERM; returns the exit code. `announce` prints the user-facing lines; the
    server's own request log goes to the console with `server_log`, else to a file named on failure."""
    store = tracking_store()
    if store.remote:
        announce(f"runs are recorded on the tracking server {redact_uri(store.uri)}: open it in a browser (it "
                 f"serves the UI)")
        return 0
    if store.sqlite_file is not None and not store.sqlite_file.is_file():
        announce(f"note: {store.sqlite_file} does not exist yet: the UI starts empty until a run is recorded "
                 f"(e.g. `accelbench smoke` in this folder)")
    port = port or free_port()
    check_port(port)
    url = f"http://{HOST}:{port}"
    # Its own process group, so stopping the UI also stops the server's worker processes.
    log = None if server_log else Path(tempfile.gettempdir()) / f"accelbench-ui-{port}.log"
    with contextlib.ExitStack() as files:
        output = files.enter_context(log.open("w")) if log is not None else None
        process = subprocess.Popen(server_command(store.uri, port, workers), start_new_session=True,
                                   env={**os.environ, "MLFLOW_TRACKING_URI": store.uri}, stdout=output,
                                   stderr=subprocess.STDOUT if output is not None else None)
    try:
        _wait_healthy(url, process, STARTUP_TIMEOUT_S, log)
        announce(f"MLflow UI for {redact_uri(store.uri)}: {url}  (listening on {HOST} only; Ctrl-C stops it)")
        return process.wait()
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM through suite.signals: a normal way to stop the UI
        return 0
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
