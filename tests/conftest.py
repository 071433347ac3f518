"""Shared fixtures: an isolated MLflow store and synthetic-data cache per test session, and the CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
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


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, cache_dir: Path, tmp_path: Path) -> None:
    """Every test gets its own MLflow store and never touches the user's ~/.cache or ./mlflow.db."""
    monkeypatch.setenv("ACCELBENCH_CACHE", str(cache_dir))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
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
