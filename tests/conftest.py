"""Shared fixtures: an isolated MLflow store and synthetic-data cache per test session, and the CLI runner."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "data"
COCO_FIXTURE = FIXTURES / "coco_val2014_100"
# Small, fast settings for real runs on a 2-core CPU.
TINY = ["--set", "data.synthetic.train=8", "--set", "data.synthetic.val=4", "--set", "train.max_steps=2",
        "--set", "data.workers=0"]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("accelbench-cache")


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its tables created, once: each test starts from a copy instead of paying for
    MLflow's schema migrations in its first process."""
    import mlflow

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, cache_dir: Path, tmp_path: Path, empty_store: Path) -> None:
    """Every test gets its own MLflow store and never touches the user's ~/.cache or ./mlflow.db."""
    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    monkeypatch.setenv("ACCELBENCH_CACHE", str(cache_dir))
    monkeypatch.setenv("ACCELBENCH_SPOOL", str(tmp_path / "spool"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "ACCELBENCH_LOG_LEVEL",
                 "ACCELBENCH_PROGRESS", "ACCELBENCH_PROGRESS_INTERVAL", "ACCELBENCH_VENDOR_CONFIGS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GIT_PYTHON_REFRESH", "quiet")
    # Job folders of runs the tests launch (kept when a job fails on purpose) stay inside the test's tmp_path.
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))


@pytest.fixture
def tracking_uri() -> str:
    return os.environ["MLFLOW_TRACKING_URI"]


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `python -m suite ARGS` as a user would, in a fresh process."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "suite", *args], cwd=cwd or REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli() -> Iterator[object]:
    yield run_cli


def search_runs(tracking_uri: str) -> list:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    experiments = client.search_experiments()
    if not experiments:
        return []
    return client.search_runs([e.experiment_id for e in experiments])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` need a CUDA device; where there is none (CI) they are skipped, not failed."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MlflowServer:
    """A real `mlflow server` process on a loopback port, with a SQLite backend: started, killed and restarted."""

    def __init__(self, backend_uri: str, folder: Path, *, workers: int = 1) -> None:
        self.backend_uri = backend_uri
        self.folder = folder
        self.workers = workers
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.starts = 0

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> MlflowServer:
        self.starts += 1
        log = (self.folder / f"server{self.starts}.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend_uri,
             "--artifacts-destination", str(self.folder / "artifacts"), "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", str(self.workers)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # its own group: kill() gets workers
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((self.folder / f"server{self.starts}.log").read_text()[-3000:])
            time.sleep(0.3)

    def kill(self) -> None:
        """SIGKILL the server and its workers: the outage a crashed host or OOM killer causes."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[MlflowServer]:
    """A started server on its own SQLite file; MLFLOW_TRACKING_URI is left alone (tests choose where to log)."""
    folder = tmp_path / "server"
    folder.mkdir()
    server = MlflowServer(f"sqlite:///{folder / 'server.db'}", folder)
    try:
        yield server.start()
    finally:
        server.stop()


class FlakyProxy:
    """An HTTP proxy in front of a real tracking server that can refuse chosen requests: the network fault of a
    server that fails part-way through an upload (a stand-in for the network, not for MLflow or the suite)."""

    def __init__(self, upstream: str) -> None:
        import http.server
        import threading
        import urllib.error

        self.upstream = upstream
        self.refuse: str | None = None  # a substring of the request paths to refuse with HTTP 400
        self.refused = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return None

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy.refuse is not None and proxy.refuse in self.path:
                    proxy.refused += 1
                    payload = b'{"error_code": "BAD_REQUEST", "message": "refused by the test proxy"}'
                    self.send_response(400)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                request = urllib.request.Request(proxy.upstream + self.path, data=body, method=self.command,
                                                 headers=headers)
                try:
                    with urllib.request.urlopen(request, timeout=60) as response:
                        status, reply, reply_headers = response.status, response.read(), response.headers
                except urllib.error.HTTPError as error:
                    status, reply, reply_headers = error.code, error.read(), error.headers
                self.send_response(status)
                for key, value in reply_headers.items():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A tracking URI whose server accepts connections and never answers (a hung host: the kernel completes
    the handshake from the listen backlog, nothing reads the request)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def dead_uri() -> str:
    """A tracking URI nothing listens on (a server that is down)."""
    return f"http://127.0.0.1:{free_port()}"
