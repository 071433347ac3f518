"""`accelbench ui`: the MLflow UI on loopback for the store this machine's runs went to.

The store is the one `accelbench run` records into: `MLFLOW_TRACKING_URI` when set, else MLflow's default
`sqlite:///mlflow.db` in the current folder. A tracking server (`http(s)://...`) already serves its own UI, so
then only its address is printed. The server listens on 127.0.0.1 only; reach it from another machine through an
SSH tunnel (`ssh -L 5000:127.0.0.1:5000 host`), never by opening the port.
"""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from suite.errors import BenchError
from suite.launch.mlflow_server import LOOPBACK, MlflowServer, free_port
from suite.redaction import redact_uri

HOST = LOOPBACK
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


def check_port(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            raise BenchError(f"--port {port}: already in use on {HOST}; choose another port (--port 0 picks a "
                             f"free one)") from None


def view_lines(tracking_uri: str, ui_uri: str, experiment: str) -> list[str]:
    """The addresses that open the benchmark's saved views of `experiment` (in the training layout), or of the
    experiments list while it has no runs."""
    from suite import names, registry
    from suite.tracking.client import client, ensure_experiment, tag_clause
    from suite.tracking.views import EVERY_RUN, WORKFLOW_PARAMETER, case_view, run_path, save_views

    mlflow_client = client(tracking_uri)
    if mlflow_client.get_experiment_by_name(experiment) is None:
        return [f"  experiments: {ui_uri}/#/experiments?{'='.join(WORKFLOW_PARAMETER)}"]
    experiment_id = ensure_experiment(experiment, mlflow_client)  # an older store gains the saved view here
    lines = [f"  benchmark table, one group per case and config: {ui_uri}/{EVERY_RUN.path(experiment_id)}"]
    # One small query per known case, not every run of the store read back at start-up.
    cases = [case for case in sorted(registry.listed_cases()) if mlflow_client.search_runs(
        [experiment_id], tag_clause(names.TAG_CASE, case), max_results=1)]
    views = [case_view(case) for case in cases]
    save_views(mlflow_client, experiment_id, views)
    for case, view in zip(cases, views, strict=True):
        lines += [f"  {case}: table, one group per accelerator and config: {ui_uri}/{view.path(experiment_id)}",
                  f"  {case} charts, one bar per run, coloured by accelerator: "
                  f"{ui_uri}/{view.path(experiment_id, charts=True)}"]
    newest = mlflow_client.search_runs([experiment_id], tag_clause(names.TAG_KIND, names.KIND_COMPARISON),
                                       max_results=1, order_by=["attributes.start_time DESC"])
    if newest:
        run = newest[0]
        lines.append(f"  newest comparison report ({run.info.run_name}): "
                     f"{ui_uri}/{run_path(experiment_id, run.info.run_id, names.ARTIFACT_REPORT_HTML)}")
    return lines


def serve(port: int, workers: int, announce: Callable[[str], None], *, server_log: bool = False,
          experiment: str = "accelbench") -> int:
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
    log = None if server_log else Path(tempfile.gettempdir()) / f"accelbench-ui-{port}.log"
    server = MlflowServer(store.uri, port=port, workers=workers, log=log)
    try:
        server.start(STARTUP_TIMEOUT_S)
        announce(f"MLflow UI for {redact_uri(store.uri)}: {server.uri}  (listening on {HOST} only; Ctrl-C stops it)")
        for line in view_lines(store.uri, server.uri, experiment):
            announce(line)
        return server.wait()
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM through suite.launch.signals: a normal way to stop the UI
        return 0
    finally:
        server.stop()
