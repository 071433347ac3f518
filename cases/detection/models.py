"""torchvision detector construction from a local backbone file (or random init), never downloading anything.

The ResNet-50-FPN body is always the reference graph the published runs trained: FrozenBatchNorm2d in every block
and `trainable_backbone_layers` (3) trainable stages, whether its values come from a weights file or not. (torchvision
builds an untrained backbone with trainable BatchNorm and all five stages trainable instead: a heavier graph, with
batch norm in every block and backward through the stem and layer1, whose p_core, memory and MFU compare with no
published row.) A run without a weights file differs from one with it in the values only, so its speed and memory
stand for the published workload's.

Frozen layers with random values need statistics, though: with FrozenBatchNorm2d's identity defaults (mean 0,
variance 1) the activations of a random ResNet-50 grow block after block (their standard deviation is about 40 at
layer4 on normalised images), and the detector's losses start far off. So `calibrate_frozen_statistics` sets each
frozen layer's mean and variance once, from its own input on a few training images picked with the run's seed,
layer after layer in one forward pass: the frozen network then normalises its activations exactly as trainable
BatchNorm does at its first step (measured here: the same standard deviations at layer1-4 to three digits), and
stays fixed afterwards, as a pretrained backbone's statistics do. The calibration runs before the measured phase, on
the run's device, and touches no random stream the run uses.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import resnet50
from torchvision.models.detection.backbone_utils import BackboneWithFPN, _resnet_fpn_extractor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock

from cases.detection.settings import DetectionModelSettings
from suite.errors import ConfigError, WeightsError, did_you_mean, one_line

# Constructor arguments set by the suite itself, or that take modules (not expressible in YAML).
RESERVED_ARGUMENTS = {"self", "backbone", "num_classes", "min_size", "max_size", "kwargs"}
MAX_ARGUMENT_INT = 2**31 - 1
# The arguments whose default is None: (length, number kind, exclusive minimum) of the list they take.
LIST_ARGUMENTS: dict[str, tuple[int, type, float]] = {
    "image_mean": (3, float, -math.inf), "image_std": (3, float, 0), "fixed_size": (2, int, 0),
    "bbox_reg_weights": (4, float, 0)}
MODULE_SUFFIXES = ("_generator", "_head", "_pool", "_predictor", "_matcher", "head")


def detector_arguments(detector_class: type[nn.Module]) -> list[str]:
    """Scalar keyword arguments of a torchvision detector and of its input transform (which gets its **kwargs)."""
    names = list(inspect.signature(detector_class.__init__).parameters)
    names += list(inspect.signature(GeneralizedRCNNTransform.__init__).parameters)
    return sorted({n for n in names if n not in RESERVED_ARGUMENTS and not n.endswith(MODULE_SUFFIXES)})


def _argument_defaults(detector_class: type[nn.Module]) -> dict[str, Any]:
    defaults: dict[str, Any] = {}
    for function in (GeneralizedRCNNTransform.__init__, detector_class.__init__):
        for name, parameter in inspect.signature(function).parameters.items():
            if parameter.default is not inspect.Parameter.empty:
                defaults[name] = parameter.default
    return defaults


def _value_problem(name: str, value: Any, default: Any) -> str | None:
    """What is wrong with a value for an argument whose default shows its kind (count, threshold, switch)."""
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(default, int):  # counts: proposals, detections, samples per image, size divisors
        ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ARGUMENT_INT
        return None if ok else f"must be an integer from 1 to {MAX_ARGUMENT_INT}"
    if isinstance(default, float):  # thresholds and fractions
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
        if ok and ("thresh" in name or "fraction" in name) and value > 1:
            ok = False
        return None if ok else "must be a finite number >= 0" + (" and <= 1" if "thresh" in name or "fraction"
                                                                  in name else "")
    shape = LIST_ARGUMENTS.get(name)
    if shape is not None and value is not None:
        length, kind, minimum = shape
        ok = isinstance(value, list) and len(value) == length and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > minimum
            and (kind is float or isinstance(v, int)) for v in value)
        if not ok:
            return f"must be null or a list of {length} {'numbers' if kind is float else 'integers'} > {minimum}"
    return None


def check_detector_kwargs(detector_class: type[nn.Module], kwargs: Mapping[str, Any]) -> None:
    # torchvision forwards unknown keywords to its transform, which swallows them: a typo would do nothing.
    valid = detector_arguments(detector_class)
    defaults = _argument_defaults(detector_class)
    for key, value in kwargs.items():
        if key not in valid:
            raise ConfigError(f"{detector_class.__name__} has no argument {key!r}{did_you_mean(key, valid)}; "
                              f"valid: {', '.join(valid)}", key=f"model.detector_kwargs.{key}")
        # A value of the right type but out of range builds the model and fails at its first step (a negative
        # proposal count, say): refuse it now, with torchvision's default as the example.
        problem = _value_problem(key, value, defaults.get(key))
        if problem is not None:
            raise ConfigError(f"{problem} (torchvision's default: {defaults.get(key)!r}), got {value!r:.60}",
                              key=f"model.detector_kwargs.{key}")


def check_resnet50_weights(path: Path) -> None:
    """The file is a torch checkpoint holding a ResNet-50 state dict (names and shapes), checked without building
    a model in memory: raises WeightsError before any run exists."""
    try:
        with warnings.catch_warnings():  # torch warns about odd pickles before it refuses them: the error says it
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle, zip and torch errors all mean "not a checkpoint"
        raise WeightsError(f"model.backbone_weights: {path} is not a torch checkpoint: {one_line(e)}") from e
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"model.backbone_weights: {path} holds a {type(state).__name__}, not a state dict of "
                           f"tensors")
    with torch.device("meta"):
        body = resnet50(weights=None)
    try:
        body.load_state_dict(state, assign=True)
    except RuntimeError as e:
        raise WeightsError(f"model.backbone_weights: {path} is not a ResNet-50 state dict: "
                           f"{' '.join(str(e).split())[:300]}") from e


def resnet50_fpn(settings: DetectionModelSettings, *, returned_layers: list[int] | None = None,
                 extra_blocks: Callable[[], ExtraFPNBlock] | None = None) -> tuple[BackboneWithFPN, int]:
    """The reference ResNet-50-FPN body; returns it with the number of trainable stages.

    FrozenBatchNorm2d and `trainable_backbone_layers` trainable stages in both cases: with a weights file its values
    are the file's, without one they are random and the frozen statistics are set by `calibrate_frozen_statistics`
    once the model is on its device (see the module's docstring).
    """
    body = resnet50(weights=None, norm_layer=misc_nn_ops.FrozenBatchNorm2d)
    if settings.backbone_weights is not None:
        path = Path(settings.backbone_weights)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            body.load_state_dict(state)
        except (RuntimeError, OSError, KeyError) as e:
            raise WeightsError(f"model.backbone_weights: {path} is not a ResNet-50 state dict: "
                               f"{str(e).splitlines()[0]}") from e
    trainable = settings.trainable_backbone_layers
    fpn = _resnet_fpn_extractor(body, trainable, returned_layers=returned_layers,
                                extra_blocks=extra_blocks() if extra_blocks else None)
    return fpn, trainable


def frozen_norms(module: nn.Module) -> list[misc_nn_ops.FrozenBatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, misc_nn_ops.FrozenBatchNorm2d)]


@torch.no_grad()
def calibrate_frozen_statistics(body: nn.Module, images: torch.Tensor) -> int:
    """Set every FrozenBatchNorm2d in `body` to the per-channel mean and variance of its own input on `images`, in
    the order the forward pass reaches them (so each layer sees the already calibrated layers before it); returns
    how many layers were set. Weight 1 and bias 0 stay: the layer then normalises as BatchNorm does at its first
    training step."""
    norms = frozen_norms(body)

    def set_statistics(module: misc_nn_ops.FrozenBatchNorm2d, inputs: tuple[torch.Tensor, ...]) -> None:
        values = inputs[0].float()
        module.running_mean.copy_(values.mean(dim=(0, 2, 3)))
        module.running_var.copy_(values.var(dim=(0, 2, 3), unbiased=False))

    handles = [norm.register_forward_pre_hook(set_statistics) for norm in norms]
    try:
        body(images)
    finally:
        for handle in handles:
            handle.remove()
    return len(norms)
