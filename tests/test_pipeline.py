"""A real run wastes no work on data and takes the fast paths it is given: one parse of each annotation file, no
masks for a box-only case, one validation loader for every evaluation, the amp_bf16_fast profile and the
faster_coco_eval backend recorded as such; its progress lines and its run page."""

from __future__ import annotations

import logging
import time

import mlflow
import pytest
import torch
from pycocotools.coco import COCO

from cases.detection import case as case_module
from cases.detection import data as data_module
from suite import names
from suite.config import resolve
from suite.launch import runner
from suite.precision import PROFILES
from suite.vendors.cpu import CpuAdapter
from suite.vendors.kunlunxin import KunlunxinAdapter
from suite.vendors.metax import MetaxAdapter
from tests.helpers import LIGHT_SETTINGS, linked_filters

# Two epochs of two steps, each followed by an evaluation, on the light model.
SETTINGS = ["train.mode=smoke", "data.synthetic.train=4", "data.synthetic.val=2", "hp.epochs=2", "hp.bs=2",
            "data.workers=0", *LIGHT_SETTINGS]


def _count_calls(monkeypatch: pytest.MonkeyPatch, owner: object, attribute: str) -> list[int]:
    calls: list[int] = []
    original = getattr(owner, attribute)

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, attribute, counted)
    return calls


def test_fast_run_parses_once_and_records_what_ran(monkeypatch: pytest.MonkeyPatch, tracking_uri: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="suite.progress")
    monkeypatch.setenv("ACCELBENCH_PROGRESS_INTERVAL", "3600")  # only the lines due every log_every (1) steps
    indexes = _count_calls(monkeypatch, data_module, "open_index")
    parses = _count_calls(monkeypatch, data_module, "load_coco")
    masks = _count_calls(monkeypatch, COCO, "annToMask")
    val_loaders = _count_calls(monkeypatch, case_module.DetectionCase, "_build_val_loader")
    resolved = resolve("faster_rcnn", "cpu", "1x1", [*SETTINGS, "train.precision=amp_bf16_fast",
                                                     "eval.backend=faster_coco_eval"])
    outcome = runner.run(resolved, synthetic=True, started_at=time.time())

    assert outcome.status == "FINISHED"
    assert len(indexes) == 2  # train and val, once each, for two epochs and two evaluations
    assert len(parses) == 1  # pycocotools holds the val ground truth only, for the scoring rank, once
    assert masks == []  # Faster R-CNN trains on boxes: no polygon is rasterised
    assert len(val_loaders) == 1
    run = mlflow.MlflowClient(tracking_uri).get_run(outcome.run_id)
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    assert tags[names.TAG_PRECISION] == "amp_bf16_fast" and params["precision"] == "amp_bf16_fast"
    assert tags["math.autocast"] == "bfloat16" and tags["math.memory_format"] == "channels_last"
    assert tags["math.optimizer_impl"] == "fused"
    assert params["eval.backend"] == "faster_coco_eval"
    assert metrics[names.EPOCHS_RUN] == 2 and names.MAP in metrics
    history = mlflow.MlflowClient(tracking_uri).get_metric_history(outcome.run_id, names.MAP)
    assert [m.step for m in history] == [1, 2]

    # Not a terminal: plain progress lines, each step's (log_every is 1), and a summary per phase.
    lines = [r.getMessage() for r in caplog.records if r.name == "suite.progress"]
    for epoch in (1, 2):
        assert any(line.startswith(f"epoch {epoch}: 1/2 steps (50%)") and "loss " in line for line in lines), lines
        step2 = next(line for line in lines if line.startswith(f"epoch {epoch}: 2/2 steps (100%)"))
        assert "steps/s" in step2 and "ETA 00:00" in step2 and "img/s (core)" in step2
        assert any(line.startswith(f"epoch {epoch}: 2 steps in ") for line in lines)
    assert sum(line.startswith("evaluation: 1 batches in ") for line in lines) == 2
    assert any(line.startswith("loading instances_val2017.json: ") for line in lines)

    # The run page: what ran, the published pages' columns, and links to the runs it compares with.
    page = tags[names.TAG_DESCRIPTION]
    assert "case **faster_rcnn**" in page and "precision **amp_bf16_fast**" in page
    assert f"fix_hp **{outcome.resolved.fix_hp_label}**" in page
    table = [line for line in page.splitlines() if line.startswith("|")]
    assert table[0].startswith("| e2e_time (s) | p_whole (img/s) | p_train (img/s) | p_core (img/s) | mAP |")
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    assert float(cells[3]) == pytest.approx(metrics[names.P_CORE], abs=0.006)
    assert float(cells[4]) == pytest.approx(metrics[names.MAP], abs=5e-5)
    experiment_id = run.info.experiment_id
    # the run's links open its case's current rows: measured ones and the newest version of each published page
    assert ("tags.`bench.case` = 'faster_rcnn' and tags.`bench.superseded` = 'false'"
            in linked_filters(tracking_uri, experiment_id, page))


def test_precision_profiles() -> None:
    import typing

    from suite.config import Precision

    assert typing.get_args(Precision) == tuple(PROFILES)
    fast = PROFILES["amp_bf16_fast"]
    assert fast.autocast_dtype == PROFILES["amp_bf16"].autocast_dtype and fast.peak_key == "amp_bf16"
    assert fast.memory_format == torch.channels_last and PROFILES["tf32"].memory_format == torch.contiguous_format
    cpu = CpuAdapter()
    assert cpu.optimizer_options("amp_bf16_fast") == {"fused": True} and cpu.optimizer_options("amp_bf16") == {}
    assert "amp_bf16_fast" not in MetaxAdapter.supported_precisions
    assert "amp_bf16_fast" not in KunlunxinAdapter.supported_precisions
