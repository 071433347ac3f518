"""Backbone weights from a local file only: hash-prefix check, and the one reference graph (FrozenBatchNorm, three
trainable stages) with a weights file or without, its random frozen statistics calibrated."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models import resnet50
from torchvision.ops.misc import FrozenBatchNorm2d

from cases.detection.models import calibrate_frozen_statistics
from cases.detection.weights import sha256_of, verify_weights_file
from cases.faster_rcnn import FasterRCNNCase
from suite import config, registry
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


def test_random_init_builds_the_reference_graph_too() -> None:
    """No weights file: the same FrozenBatchNorm2d graph with three trainable stages, random values."""
    case = FasterRCNNCase(config.resolve("faster_rcnn", "cpu", "1x1").config)
    model = case.build_model()
    body = model.backbone.body
    assert case.trainable_layers == 3
    assert isinstance(body.bn1, FrozenBatchNorm2d) and not any(isinstance(m, torch.nn.BatchNorm2d)
                                                               for m in model.modules())
    assert not any(p.requires_grad for p in body.layer1.parameters())
    assert all(p.requires_grad for p in body.layer2.parameters())


def test_calibrated_frozen_statistics_normalise_as_batchnorm_does_at_its_first_step() -> None:
    """The frozen layers of a random backbone take their statistics from their own inputs, layer after layer: on
    those images the frozen network computes exactly what the same network with trainable BatchNorm computes in
    training mode, where the identity statistics would let activations grow block after block."""
    torch.manual_seed(3)
    frozen = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    torch.manual_seed(3)  # the same convolutions: norm layers draw no random numbers
    batchnorm = resnet50(weights=None).train()
    images = torch.randn(4, 3, 96, 128)
    features = torch.nn.Sequential(*list(frozen.children())[:-2])
    with torch.no_grad():
        uncalibrated = features(images)
        assert calibrate_frozen_statistics(features, images) == 53
        calibrated = features(images)
        reference = torch.nn.Sequential(*list(batchnorm.children())[:-2])(images)
    assert torch.allclose(calibrated, reference, rtol=1e-3, atol=1e-3)  # float rounding through 53 layers
    assert uncalibrated.std() > 10 * reference.std()  # why calibration: ~40x at layer4 here


@pytest.mark.parametrize("case_name", ["faster_rcnn", "retinanet", "mask_rcnn"])
def test_a_weights_file_changes_the_values_never_the_graph(case_name: str, weights_file: Path) -> None:
    """Trainable parameters, module types and the training FLOPs per image a run records are the same with a
    ResNet-50 weights file and without one."""
    from suite.engine.flops import count_training_flops

    facts = []
    for settings in ([], [f"model.backbone_weights={weights_file}"]):
        resolved = config.resolve(case_name, "cpu", "1x1", [*settings, "data.synthetic.train=4",
                                                             "data.synthetic.val=2"])
        case = registry.case_class(case_name)(resolved.config)
        case.check(case.synthetic_root())
        device = torch.device("cpu")
        model = case.build_model()
        done = case.calibrate(model, device)
        torch.manual_seed(0)
        flops = count_training_flops(case.reference_model(device), case.to_device(case.sample_batch(1), device),
                                     case.loss)
        facts.append((case.trainable_layers, sum(p.numel() for p in model.parameters() if p.requires_grad),
                      [type(m).__name__ for m in model.modules()], flops))
        assert done == ("from the weights file" if settings else "calibrated on 4 training images (seed 0)")
    assert facts[0] == facts[1]
    assert facts[0][0] == 3 and facts[0][3] > 0


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
