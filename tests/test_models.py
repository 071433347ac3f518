"""Backbone weights from a local file only: hash-prefix check, FrozenBatchNorm and trainable stages."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models import resnet50
from torchvision.ops.misc import FrozenBatchNorm2d

from cases.detection.weights import sha256_of, verify_weights_file
from cases.faster_rcnn import FasterRCNNCase
from suite import config
from suite.errors import ConfigError, WeightsError


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("weights")
    plain = folder / "resnet50.pth"
    torch.save(resnet50(weights=None).state_dict(), plain)
    named = folder / f"resnet50-{sha256_of(plain)[:8]}.pth"
    plain.rename(named)
    return named


def test_hash_prefix_in_name_is_checked(weights_file: Path, tmp_path: Path) -> None:
    assert verify_weights_file(weights_file).startswith(weights_file.stem.split("-")[1])
    wrong = tmp_path / "resnet50-00000000.pth"
    wrong.write_bytes(weights_file.read_bytes())
    with pytest.raises(WeightsError, match="its name says 00000000"):
        verify_weights_file(wrong)
    with pytest.raises(WeightsError, match="does not exist"):
        verify_weights_file(tmp_path / "absent.pth")


def test_pretrained_backbone_is_frozen_bn_with_three_trainable_stages(weights_file: Path) -> None:
    resolved = config.resolve("faster_rcnn", "cpu", "1x1", [f"model.backbone_weights={weights_file}"])
    case = FasterRCNNCase(resolved.config)
    model = case.build_model()
    body = model.backbone.body
    assert case.trainable_layers == 3
    assert isinstance(body.bn1, FrozenBatchNorm2d)
    assert not any(p.requires_grad for p in body.layer1.parameters())
    assert all(p.requires_grad for p in body.layer4.parameters())
    expected = torch.load(weights_file, weights_only=True)["layer4.0.conv1.weight"]
    assert torch.equal(body.layer4[0].conv1.weight, expected)


def test_random_init_trains_every_stage_with_batchnorm() -> None:
    case = FasterRCNNCase(config.resolve("faster_rcnn", "cpu", "1x1").config)
    model = case.build_model()
    assert case.trainable_layers == 5
    assert isinstance(model.backbone.body.bn1, torch.nn.BatchNorm2d)
    assert all(p.requires_grad for p in model.backbone.body.parameters())


def test_detector_kwargs_reach_torchvision_and_typos_are_rejected(tmp_path: Path) -> None:
    resolved = config.resolve("faster_rcnn", "cpu", "1x1", ["model.detector_kwargs={rpn_post_nms_top_n_train: 300}"])
    model = FasterRCNNCase(resolved.config).build_model()
    assert model.rpn._post_nms_top_n["training"] == 300
    resolved = config.resolve("faster_rcnn", "cpu", "1x1", ["model.detector_kwargs={rpn_post_nms_topn_train: 3}"])
    with pytest.raises(ConfigError, match="FasterRCNN has no argument 'rpn_post_nms_topn_train' "
                                          r"\(did you mean 'rpn_post_nms_top_n_train'\?\)"):
        FasterRCNNCase(resolved.config).check(tmp_path)


def test_warmup_is_capped_at_an_epoch_except_in_throughput_mode() -> None:
    for mode, expected in (("convergence", 3), ("throughput", 100)):
        settings = [f"train.mode={mode}", "hp.warmup_iters=100"]
        case = FasterRCNNCase(config.resolve("faster_rcnn", "cpu", "1x1", settings).config)
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        warmup, _ = case.schedulers(optimizer, iters_per_epoch=4)
        assert warmup.total_iters == expected, mode
