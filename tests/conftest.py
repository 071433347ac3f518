"""Shared fixtures: an isolated MLflow store, synthetic-data cache and environment per test; template stores built
once per session and copied per test; a real `mlflow server`; a server that never answers. (Helpers that are not
fixtures are in tests/helpers.py.)"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from suite.launch.mlflow_server import MlflowServer
from tests.helpers import server_on_copy

# One compute thread per process, set before anything imports torch. The suite keeps three test workers busy on a
# 2-core machine, each starting runs of its own: with torch's default of one OpenMP thread per core, the threads
# of concurrent processes spin-wait for each other, and a light run costs 3x its CPU time (28 s instead of 8 s
# measured beside two busy processes). The tests check what runs record, not how fast a core is.
os.environ["OMP_NUM_THREADS"] = "1"


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


@pytest.fixture(scope="session")
def published_store(tmp_path_factory: pytest.TempPathFactory, empty_store: Path) -> Path:
    """A store holding the published rows (what `accelbench import-published` records), built once; tests that
    read it get a copy (`store_with_published`)."""
    from suite.results.published import import_published, load_published

    path = tmp_path_factory.mktemp("mlflow-published") / "mlflow.db"
    shutil.copyfile(empty_store, path)
    import_published(load_published(), tracking_uri=f"sqlite:///{path}")
    return path


ISOLATED_NAMES = ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "ACCELBENCH_LOG_LEVEL",
                  "ACCELBENCH_PROGRESS", "ACCELBENCH_PROGRESS_INTERVAL", "ACCELBENCH_VENDOR_CONFIGS")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, cache_dir: Path, tmp_path: Path, empty_store: Path
                 ) -> Iterator[None]:
    """Every test gets its own MLflow store and never touches the user's ~/.cache or ./mlflow.db; whatever a test
    (or the CLI it drives in-process) sets in the environment is undone after it."""
    saved = dict(os.environ)
    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    monkeypatch.setenv("ACCELBENCH_CACHE", str(cache_dir))
    monkeypatch.setenv("ACCELBENCH_SPOOL", str(tmp_path / "spool"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    for name in ISOLATED_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GIT_PYTHON_REFRESH", "quiet")
    # Job folders of runs the tests launch (kept when a job fails on purpose) stay inside the test's tmp_path, reached
    # through a short link: a Unix socket's path has at most 107 bytes, and multiprocessing puts the one through
    # which DataLoader workers pass tensors under TMPDIR (from pytest-100 on, tmp_path/tmp made it too long).
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    link = Path(tempfile.mkdtemp(prefix="ab-", dir="/tmp")) / "t"
    link.symlink_to(scratch)
    monkeypatch.setenv("TMPDIR", str(link))
    yield
    os.environ.clear()
    os.environ.update(saved)
    shutil.rmtree(link.parent, ignore_errors=True)  # the link only; its target is tmp_path's


@pytest.fixture
def tracking_uri() -> str:
    return os.environ["MLFLOW_TRACKING_URI"]


@pytest.fixture
def store_with_published(tracking_uri: str, published_store: Path) -> str:
    """This test's store, starting with the published rows already imported."""
    shutil.copyfile(published_store, tracking_uri.removeprefix("sqlite:///"))
    return tracking_uri


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` need a CUDA device; where there is none (CI) they are skipped, not failed."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def mlflow_server(tmp_path: Path, empty_store: Path) -> Iterator[MlflowServer]:
    """A started `mlflow server` on its own copy of the empty store and artifact folder (kill() and start() again
    for an outage); MLFLOW_TRACKING_URI is left alone (tests choose where to log)."""
    server = server_on_copy(tmp_path / "server", empty_store)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A tracking URI whose server accepts connections and never answers (a hung host: the kernel completes
    the handshake from the listen backlog, nothing reads the request)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
