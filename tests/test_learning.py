"""The plumbing learns: a convergence-mode CPU run on synthetic shapes reaches bbox mAP > 0.3 (about 10 minutes).

Marked slow, so the default test run skips it; run it with `bash scripts/test.sh -m slow`.
"""

from __future__ import annotations

import math
import time

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


# The published configs' largest learning rate per case, at its batch size.
PUBLISHED_PEAK_LR = {"faster_rcnn": (16, 0.16), "retinanet": (16, 0.08), "mask_rcnn": (16, 0.16)}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(PUBLISHED_PEAK_LR))
def test_a_random_frozen_backbone_trains_with_a_finite_loss_over_the_throughput_budget(case: str,
                                                                                    tracking_uri: str) -> None:
    """Random init on the reference graph (frozen, calibrated batch norm; three trainable stages) at the published
    batch size and learning rate, for the throughput budget (5 warm-up + 20 timed steps, the recipe's warm-up):
    every step's loss is finite (the trainer ends a run FAILED at the first that is not)."""
    from suite.config import resolve
    from suite.launch import runner

    bs, lr = PUBLISHED_PEAK_LR[case]
    resolved = resolve(case, "cpu", "1x1", [f"hp.bs={bs}", f"hp.lr={lr}", "hp.warmup_iters=1000",
                                            "train.mode=throughput", "data.synthetic.train=64", "data.workers=0"])
    outcome = runner.run(resolved, synthetic=True, started_at=time.time())
    assert outcome.status == "FINISHED" and outcome.metrics[names.STEPS] == 25
    (run,) = search_runs(tracking_uri)
    losses = [m.value for m in mlflow.MlflowClient(tracking_uri).get_metric_history(run.info.run_id, names.LOSS)]
    print(case, "loss per step:", [round(v, 3) for v in losses])
    assert len(losses) == 25 and all(math.isfinite(v) for v in losses)
    assert run.data.params[names.PARAM_FROZEN_STATISTICS].startswith("calibrated")
