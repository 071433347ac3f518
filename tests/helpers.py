"""Helpers the test modules share (fixtures are in conftest.py): paths, the light run settings, running the CLI in
a process or in-process, recording runs with the real tracker, reading stores back, and stand-ins for the network
and for vendor tools."""

from __future__ import annotations

import contextlib
import http.server
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from suite import names
from suite.cli.base import CONFIGURED_LOGGERS, configure_logging, inherited_level
from suite.identity import RowIdentity
from suite.launch.mlflow_server import MlflowServer, free_port

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "data"
COCO_FIXTURE = FIXTURES / "coco_val2014_100"
SMI = FIXTURES / "smi"
STANDINS = Path(__file__).resolve().parent / "standins"

# Small data and few steps for real runs on a 2-core CPU.
TINY = ["--set", "data.synthetic.train=8", "--set", "data.synthetic.val=4", "--set", "train.max_steps=2",
        "--set", "data.workers=0"]
# The light model for every test that is not about a case's model: Faster R-CNN on MobileNetV3 at 128 px with few
# proposals keeps a step well under a second on 2 cores. (ResNet-50 runs only in the per-case tests.)
LIGHT_SETTINGS = ["model.min_size=128", "model.max_size=128", "model.backbone=mobilenet_v3_large",
                  "model.detector_kwargs={box_batch_size_per_image: 32, rpn_pre_nms_top_n_train: 128, "
                  "rpn_post_nms_top_n_train: 64, box_detections_per_img: 10}"]
LIGHT = [*TINY, *(word for setting in LIGHT_SETTINGS for word in ("--set", setting))]
LIGHT_RUN = ["run", "--case", "faster_rcnn", "--vendor", "cpu", "--synthetic", *LIGHT]

__all__ = ["free_port"]


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`python -m suite ARGS` as a user runs it, in a fresh process (where the process boundary is the point)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "suite", *args], cwd=cwd or REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def _logging_restored() -> Iterator[None]:
    """Undo what a command does to the logging setup (-v/-q, a launcher's line format) and the variables that
    setup exports, so the next test in this process starts from the same state."""
    levels = {name: logging.getLogger(name).level for name in CONFIGURED_LOGGERS}
    handlers = list(logging.getLogger().handlers)
    environ = dict(os.environ)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        logging.getLogger().handlers[:] = handlers
        os.environ.clear()
        os.environ.update(environ)


def invoke(*args: str, env: dict[str, str] | None = None, console: bool = False) -> Result:
    """The CLI in this process (click's CliRunner): the same commands and one-line errors, without a process
    start and a torch import per call; `env` is set for the call only. With `console`, logging is set up first
    as the console script sets it up, so stderr also holds the log lines a user sees. Result has exit_code,
    stdout and stderr."""
    from suite.cli import cli

    with _logging_restored():
        if console:
            configure_logging(inherited_level())
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def server_on_copy(folder: Path, empty_store: Path, *, workers: int = 1) -> MlflowServer:
    """An `mlflow server` (not started) in `folder`: its SQLite file a copy of the migrated empty store (no
    migrations at start), its artifacts and log beside it."""
    folder.mkdir()
    shutil.copyfile(empty_store, folder / "server.db")
    return MlflowServer(f"sqlite:///{folder / 'server.db'}", workers=workers, artifacts=folder / "artifacts",
                        log=folder / "server.log")


def search_runs(tracking_uri: str) -> list[Any]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    experiments = client.search_experiments()
    if not experiments:
        return []
    return client.search_runs([e.experiment_id for e in experiments])


def artifact_paths(tracking_uri: str, run_id: str) -> set[str]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    found, stack = set(), [None]
    while stack:
        for item in client.list_artifacts(run_id, stack.pop()):
            (stack.append(item.path) if item.is_dir else found.add(item.path))
    return found


def metric_history(tracking_uri: str, run_id: str, key: str) -> list[tuple[int, int, float]]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    return sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, key))


def linked_filters(tracking_uri: str, experiment_id: str, text: str) -> list[str]:
    """The search filter of each saved view that `text`'s UI links open, after checking that every link opens the
    training layout and names a view saved on the experiment."""
    import json
    import re

    import mlflow

    from suite.tracking.views import VIEW_TAG_PREFIX

    tags = mlflow.MlflowClient(tracking_uri).get_experiment(experiment_id).tags
    # the saved views' links (MLflow's own links, such as its breadcrumb's, carry no view)
    links = [link for link in re.findall(rf"#/experiments/{experiment_id}/runs\?([^)\s\"]+)", text)
             if "viewStateShareKey=" in link]
    assert links, text
    filters = []
    for query in links:
        parameters = dict(p.split("=", 1) for p in query.replace("&amp;", "&").split("&"))
        assert parameters.get("workflowType") == "machine_learning", query
        envelope = json.loads(tags[VIEW_TAG_PREFIX + parameters["viewStateShareKey"]])
        filters.append(json.loads(envelope["state"])["searchFilter"])
    return filters


def record_run(*, vendor: str, topology: str, metrics: dict[str, float], round_index: int = 0,
               case: str = "faster_rcnn", precision: str = "tf32", bs: int = 16, lr: float = 0.16,
               fix_hp: str = "bs=16,lr=0.16", mode: str = "throughput", status: str = "FINISHED",
               config_hash: str | None = None, experiment: str = "accelbench") -> str:
    """A measured run recorded by the real tracker with the row identity a run of that config has."""
    from suite.tracking.tracker import MlflowTracker

    identity = RowIdentity(case=case, vendor=vendor, accelerator=vendor.upper(), topology=topology,
                           precision=precision, fix_hp=fix_hp, mode=mode, round=round_index, config_hash=config_hash,
                           bs=bs, lr=lr)
    tracker = MlflowTracker.start(experiment=experiment, run_name=identity.run_name,
                                  tags={**identity.tags(), names.TAG_STATUS: status,
                                        names.TAG_SUPERSEDED: "false"})  # as suite.tracking.record tags a run
    tracker.log_params(identity.params())
    tracker.log_metrics(metrics)
    tracker.finish(status)
    return tracker.run_id


def mlflow_project_run(*args: str) -> subprocess.CompletedProcess[str]:
    """`mlflow run` runs the entry point with the first `python` on PATH: this venv's, as for a user inside it."""
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run([str(bin_dir / "mlflow"), "run", str(REPO), *args, "--env-manager", "local"],
                          capture_output=True, text=True, timeout=600, env=env)


def tool_on_path(folder: Path, name: str, recorded: str | None = None, text: str | None = None) -> dict[str, str]:
    """A stand-in for a vendor's device tool: an executable `name` printing a recorded real output (or `text`).
    Returns the PATH that finds it first."""
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / name
    source = f"open({str(SMI / recorded)!r}).read()" if recorded else repr(text or "")
    tool.write_text(f"#!{sys.executable}\nimport sys\nsys.stdout.write({source})\n")
    tool.chmod(0o755)
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def dead_uri() -> str:
    """A tracking URI nothing listens on (a server that is down)."""
    return f"http://127.0.0.1:{free_port()}"


class UiProcess:
    """`python -m suite ui --port 0` in the background; `url` is what it printed."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "suite", "ui", "--port", "0", *args], cwd=REPO,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 180
        line = ""
        while time.monotonic() < deadline and "http://" not in line:
            line = self.process.stdout.readline()
            if not line and self.process.poll() is not None:
                raise AssertionError(self.process.stderr.read())
        assert "http://" in line, line
        self.announcement = line.strip()
        self.url = line.split(": ", 1)[1].split()[0]
        self.port = int(self.url.rsplit(":", 1)[1])

    def view_lines(self, count: int) -> list[str]:
        """The next `count` lines it printed: the addresses of the benchmark's saved views."""
        return [self.process.stdout.readline().strip() for _ in range(count)]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


class FlakyProxy:
    """An HTTP proxy in front of a real tracking server that can refuse chosen requests: the network fault of a
    server that fails part-way through an upload (a stand-in for the network, not for MLflow or the suite)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.refuse: str | None = None  # a substring of the request paths to refuse with HTTP 400
        self.refused = 0
        self.hold: str | None = None  # a substring of the request paths to hold unanswered until `released`
        self.held = 0
        self.released = threading.Event()  # held requests are then dropped, never forwarded
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return None

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy.hold is not None and proxy.hold in self.path:
                    proxy.held += 1
                    proxy.released.wait(300)
                    return
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
