"""The plumbing learns: a convergence-mode CPU run on synthetic shapes reaches bbox mAP > 0.3 (about 10 minutes).

Marked slow, so the default test run skips it; run it with `bash scripts/test.sh -m slow`.
"""

from __future__ import annotations

import mlflow
import pytest

from suite import names
from tests.helpers import REPO, run_cli, search_runs

# The README's "Checking that training really learns" command.
LEARNING_RUN = ["run", "--case", "faster_rcnn", "--vendor", "cpu", "--synthetic",
                "--config", str(REPO / "benchmarks" / "learning_check.yaml")]
TEN_MINUTES = 600


@pytest.mark.slow
def test_faster_rcnn_learns_synthetic_shapes_on_cpu(tracking_uri: str) -> None:
    result = run_cli(*LEARNING_RUN, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = search_runs(tracking_uri)
    curve = mlflow.MlflowClient(tracking_uri).get_metric_history(run.info.run_id, names.MAP)
    print("bbox mAP per epoch:", [(m.step, round(m.value, 4)) for m in curve])
    print("e2e_time:", run.data.metrics[names.E2E_TIME])
    assert run.data.metrics[names.MAP_BEST] > 0.3
    assert run.data.metrics[names.E2E_TIME] < TEN_MINUTES
    assert run.data.tags[names.TAG_CONVERGED] == "true"
