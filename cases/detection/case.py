"""The detection workload shared by all cases: checks, datasets, loaders, model, optimizer, loss and evaluation.

A case subclass only says which detector head to put on the backbone and which IoU types it is scored on. The
suite's trainer drives it; a case never times itself.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from cases.detection.settings import DetectionModelSettings
from cases.detection.synthetic import COMPLETE_MARKER as SYNTHETIC_COMPLETE_MARKER
from cases.detection.synthetic import SyntheticSpec, ensure_dataset, write_dataset
from cases.detection.weights import verify_weights_file
from suite import names
from suite.config import BenchConfig
from suite.errors import ConfigError
from suite.launch.signals import ignore_stop_signals
from suite.progress import Progress
from suite.registry import load_object
from suite.tracking.provenance import DatasetRecord

# torch, torchvision and pycocotools are imported where they are used, not here: reading a case's config
# (`show-config`, every `--set` check) and writing its synthetic data (`make-data`) then take a fraction of a second
# instead of the 4 s those imports cost.
if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, Sampler

    from cases.detection.data import CocoDetection
    from suite.engine.distributed import Collectives, DistContext

logger = logging.getLogger(__name__)


class ImportedOnUse:
    """A class attribute that names a class by import string ("package.module:Name") and imports it when first
    read, so a case can name its torchvision detector without importing torchvision with the case."""

    def __init__(self, import_string: str) -> None:
        self.import_string = import_string
        self._value: Any = None

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if self._value is None:
            self._value = load_object(self.import_string)
        return self._value


Batch = tuple[tuple["torch.Tensor", ...], tuple[dict[str, "torch.Tensor"], ...]]
# Training images whose statistics a random-init frozen backbone takes (cases.detection.models): one no-grad pass,
# enough for per-channel means and variances, small enough for any device at the full 800-1333 px.
CALIBRATION_IMAGES = 8
REFERENCE_SEED = 0  # the values and calibration images of the model FLOPs are counted on (reference_model)


class DetectionCase:
    """Base of the three COCO detection cases."""

    model_settings: ClassVar[type[DetectionModelSettings]] = DetectionModelSettings  # the `model:` section
    name: ClassVar[str]
    iou_types: ClassVar[tuple[str, ...]] = ("bbox",)
    needs_masks: ClassVar[bool] = False
    backbones: ClassVar[tuple[str, ...]] = ("resnet50",)

    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self.train_set: CocoDetection | None = None
        self.val_set: CocoDetection | None = None
        self.weights_sha256: str | None = None
        self.trainable_layers: int | None = None
        self._train_sampler: Sampler[int] | None = None
        self._val_loader: DataLoader | None = None

    # --- checks done before any run is created -------------------------------------------------------------
    def check_config(self) -> None:
        """The checks of the config alone: no file is read and nothing heavy imported. They run before the device
        stack loads, so a config this case refuses costs a fraction of a second (raises ConfigError)."""
        backbone = self.config.model.backbone
        if backbone not in self.backbones:
            raise ConfigError(f"backbone {backbone!r} is not available for {self.name} "
                              f"(available: {', '.join(self.backbones)})", key="model.backbone")

    def check(self, data_root: Path) -> None:
        """Every check: the config's, the detector's arguments, the weights file and the dataset; index the
        annotations (raises BenchError)."""
        from cases.detection.data import (
            CocoDetection,
            check_image_files,
            check_image_headers,
            check_labels,
            check_root,
            check_segmentations,
        )
        from cases.detection.evaluator import check_backend
        from cases.detection.models import check_detector_kwargs

        self.check_config()
        model = self.config.model
        check_detector_kwargs(self.detector_class, model.detector_kwargs)
        check_backend(self.config.eval.backend)
        self.weights_sha256 = self.verify_weights()
        check_root(data_root)
        data = self.config.data
        self.train_set = CocoDetection(data_root, "train", with_masks=self.needs_masks,
                                       hflip_prob=data.hflip_prob, drop_empty=True)
        self.val_set = CocoDetection(data_root, "val", with_masks=False, limit=data.val_limit)
        for dataset in (self.train_set, self.val_set):
            check_image_files(dataset)
            check_image_headers(dataset)
        for dataset in (self.train_set, self.val_set):
            check_labels(dataset, model.num_classes)
        if self.needs_masks:
            check_segmentations(self.train_set)

    def verify_weights(self) -> str | None:
        """The backbone file's SHA-256, after checking its name's hash and that it loads into the backbone; None
        for random init."""
        path = self.weights_file
        if path is None:
            return None
        digest = verify_weights_file(path)
        self.check_weights(path)
        return digest

    def check_weights(self, path: Path) -> None:
        """The backbone file holds weights this case can load (a ResNet-50 state dict for the built-in cases)."""
        from cases.detection.models import check_resnet50_weights

        check_resnet50_weights(path)

    # --- synthetic data and the doctor's probe ------------------------------------------------------------------
    @classmethod
    def write_synthetic(cls, out: Path, *, train: int, val: int, width: int, height: int, seed: int = 0) -> None:
        """`accelbench make-data`: a COCO2017-layout dataset of coloured shapes this case can learn."""
        write_dataset(out, SyntheticSpec(train, val, width, height, seed))

    def synthetic_root(self) -> Path:
        """The run's synthetic dataset (`data.synthetic` settings), generated on first use and cached."""
        return ensure_dataset(SyntheticSpec(**self.config.data.synthetic.model_dump()))

    @property
    def weights_file(self) -> Path | None:
        """The local backbone weights this run loads, or None for random init."""
        weights = self.config.model.backbone_weights
        return Path(weights) if weights is not None else None

    @staticmethod
    def probe_settings(side: int) -> list[str]:
        """`--set` flags for one tiny training step (`accelbench doctor`): small images, random init."""
        return [f"model.min_size={side}", f"model.max_size={side}", "model.backbone_weights=null"]

    def dataset_record(self, root: Path) -> DatasetRecord | None:
        """The annotation files' fingerprints and the image counts this run uses (after dropping empty images)."""
        if self.train_set is None or self.val_set is None:
            return None
        # The indexes hashed their files already: a 469 MB train file is not read a second time.
        files = {d.annotation_file.relative_to(root).as_posix(): d.index.fingerprint.sha256
                 for d in (self.train_set, self.val_set)}
        counts = {"train_images": len(self.train_set), "train_images_in_file": self.train_set.images_in_file,
                  "val_images": len(self.val_set), "val_images_in_file": self.val_set.images_in_file}
        name = "synthetic-shapes" if (root / SYNTHETIC_COMPLETE_MARKER).is_file() else root.name
        return DatasetRecord(name=name, root=root, files=files, counts=counts)

    @property
    def backbone_init(self) -> str:
        weights = self.config.model.backbone_weights
        if weights is None:
            return "random"
        return f"file:{Path(weights).name} sha256:{self.weights_sha256}"

    # --- model -----------------------------------------------------------------------------------------------
    detector_class: ClassVar[type[nn.Module]]

    def build_detector(self, backbone: nn.Module) -> nn.Module:
        settings = self.config.model
        return self.detector_class(backbone, num_classes=settings.num_classes, min_size=settings.min_size,
                                   max_size=settings.max_size, **settings.detector_kwargs)

    def backbone_layers(self) -> dict[str, Any]:
        """Arguments for the ResNet-FPN body (returned stages, extra FPN blocks); the case's choice."""
        return {}

    def build_model(self) -> nn.Module:
        from cases.detection.models import resnet50_fpn

        settings = self.config.model
        backbone, self.trainable_layers = resnet50_fpn(settings, **self.backbone_layers())
        return self.build_detector(backbone)

    def reference_model(self, device: torch.device) -> nn.Module:
        """This run's graph with values that depend on no weights file: random from a fixed seed, frozen statistics
        calibrated as a random-init run's. FLOPs are counted on it (suite.engine.flops): a detector's work depends
        on its values (the RoIs a Mask R-CNN mask head sees), and the count must be a property of the graph and the
        data, the same for a run with a weights file and one without."""
        import torch
        from torch.random import fork_rng

        # The reference seed also picks the calibration images: the count depends on the graph and data only.
        settings = self.config.model.model_copy(update={"backbone_weights": None})
        hp = self.config.hp.model_copy(update={"seed": REFERENCE_SEED})
        twin = type(self)(self.config.model_copy(update={"model": settings, "hp": hp}))
        twin.train_set = self.train_set
        with fork_rng(devices=[]):
            torch.manual_seed(REFERENCE_SEED)
            model = twin.build_model().to(device)
        twin._set_frozen_statistics(model, device)
        return model

    def calibrate(self, model: nn.Module, device: torch.device) -> str:
        """What the model needs once it is on its device, before training; returns what was done, for the record.

        A random-init backbone's frozen batch-norm statistics are set from CALIBRATION_IMAGES training images picked
        with the run's seed (why: cases.detection.models). The run's random streams are left as they were, so a run
        with a weights file and one without draw the same numbers afterwards.
        """
        if self.config.model.backbone_weights is not None:
            return "from the weights file"
        done = self._set_frozen_statistics(model, device)
        if done is None:
            return "none frozen"
        logger.info("random-init backbone: frozen batch-norm layers %s", done)
        return done

    def _set_frozen_statistics(self, model: nn.Module, device: torch.device) -> str | None:
        """Calibrate the backbone's frozen batch-norm layers on training images; None where it has none."""
        import torch
        from torch.random import fork_rng

        from cases.detection.data import to_float
        from cases.detection.models import calibrate_frozen_statistics, frozen_norms

        body = getattr(getattr(model, "backbone", None), "body", None)
        if body is None or not frozen_norms(body):
            return None
        assert self.train_set is not None, "check() builds the datasets"
        seed = self.config.hp.seed
        with fork_rng(devices=[]), torch.no_grad():
            picked = torch.randperm(len(self.train_set), generator=torch.Generator().manual_seed(seed))
            images = [to_float(self.train_set.image(i).to(device)) for i in picked[:CALIBRATION_IMAGES].tolist()]
            transform = model.transform
            was_training = transform.training
            transform.eval()  # the evaluation resize: no random size choice
            try:
                batched, _ = transform(images)
            finally:
                transform.train(was_training)
            calibrate_frozen_statistics(body, batched.tensors)
        return f"calibrated on {len(images)} training images (seed {seed})"

    # --- data ------------------------------------------------------------------------------------------------
    def train_loader(self, pin_memory: bool, context: DistContext) -> DataLoader:
        """Shuffled, aspect-ratio grouped batches of this rank's shard (torchvision's recipe)."""
        import torch
        from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, RandomSampler

        from cases.detection.data import GroupedBatchSampler, aspect_ratio_groups, collate

        assert self.train_set is not None, "check() builds the datasets"
        data = self.config.data
        seed = self.config.hp.seed
        sampler: Sampler[int]
        if context.distributed:
            sampler = DistributedSampler(self.train_set, num_replicas=context.world_size, rank=context.rank,
                                         shuffle=True, seed=seed)
        else:
            sampler = RandomSampler(self.train_set, generator=torch.Generator().manual_seed(seed))
        self._train_sampler = sampler
        bs = self.config.hp.bs
        if data.aspect_ratio_group_factor >= 0:
            groups = aspect_ratio_groups(self.train_set.aspect_ratios(), data.aspect_ratio_group_factor)
            batch_sampler: Iterable[list[int]] = GroupedBatchSampler(sampler, groups, bs)
        else:
            batch_sampler = BatchSampler(sampler, bs, drop_last=True)
        return DataLoader(self.train_set, batch_sampler=batch_sampler, num_workers=data.workers,
                          collate_fn=collate, pin_memory=pin_memory, persistent_workers=data.workers > 0,
                          worker_init_fn=ignore_stop_signals)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle a distributed sampler per epoch (a seeded RandomSampler reshuffles by itself)."""
        from torch.utils.data import DistributedSampler

        if isinstance(self._train_sampler, DistributedSampler):
            self._train_sampler.set_epoch(epoch)

    def val_loader(self, pin_memory: bool, context: DistContext) -> DataLoader:
        """This rank's shard of the val split, in order (DistributedSampler repeats images to even out shards).

        Built once per run: its workers persist between evaluations instead of starting again every epoch.
        """
        assert self.val_set is not None, "check() builds the datasets"
        if self._val_loader is None:
            self._val_loader = self._build_val_loader(pin_memory, context)
        return self._val_loader

    def _build_val_loader(self, pin_memory: bool, context: DistContext) -> DataLoader:
        from torch.utils.data import DataLoader, DistributedSampler, SequentialSampler

        from cases.detection.data import collate

        assert self.val_set is not None
        data = self.config.data
        sampler: Sampler[int] = SequentialSampler(self.val_set)
        if context.distributed:
            sampler = DistributedSampler(self.val_set, num_replicas=context.world_size, rank=context.rank,
                                         shuffle=False)
        return DataLoader(self.val_set, batch_size=data.eval_bs, sampler=sampler, num_workers=data.workers,
                          collate_fn=collate, pin_memory=pin_memory, persistent_workers=data.workers > 0,
                          worker_init_fn=ignore_stop_signals)

    def sample_batch(self, count: int) -> Batch:
        """The first `count` training images as one batch (for counting FLOPs), without touching the loaders."""
        from cases.detection.data import collate

        assert self.train_set is not None, "check() indexes the data first"
        return collate([self.train_set[i] for i in range(min(count, len(self.train_set)))])

    @staticmethod
    def to_device(batch: Batch, device: torch.device) -> Batch:
        from cases.detection.data import to_float

        images, targets = batch
        non_blocking = device.type != "cpu"
        images = tuple(to_float(image.to(device, non_blocking=non_blocking)) for image in images)
        targets = tuple({k: v.to(device, non_blocking=non_blocking) for k, v in t.items()} for t in targets)
        return images, targets

    @staticmethod
    def batch_images(batch: Batch) -> int:
        return len(batch[0])

    # --- training --------------------------------------------------------------------------------------------
    def optimizer(self, model: nn.Module, options: Mapping[str, Any] | None = None) -> torch.optim.Optimizer:
        """torchvision's SGD; `options` picks the implementation (fused/foreach) without changing the update."""
        import torch

        hp = self.config.hp
        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay,
                               **(options or {}))

    def schedulers(self, optimizer: torch.optim.Optimizer, iters_per_epoch: int
                   ) -> tuple[torch.optim.lr_scheduler.LRScheduler | None, torch.optim.lr_scheduler.LRScheduler]:
        """(epoch-0 linear warmup stepped per iteration, MultiStepLR stepped per epoch), torchvision's recipe.

        Throughput mode keeps the recipe's full warm-up: its step budget stands for the first steps of a real
        training run, where warm-up spans far more than the budget. Capping it at a small (synthetic) epoch would
        ramp to the full lr within a few dozen steps, which diverges from random init (seen on H100, bs 16).
        """
        import torch

        hp = self.config.hp
        warmup_iters = hp.warmup_iters
        if self.config.train.mode != "throughput":
            warmup_iters = min(warmup_iters, iters_per_epoch - 1)
        warmup = None
        if warmup_iters > 0:
            warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=hp.warmup_factor,
                                                       total_iters=warmup_iters)
        multistep = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=hp.lr_steps, gamma=hp.lr_gamma)
        return warmup, multistep

    @staticmethod
    def loss(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images, targets = batch
        losses = model(list(images), list(targets))
        return sum(losses.values()), losses

    # --- evaluation ------------------------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, device: torch.device, pin_memory: bool,
                 autocast: Callable[[], contextlib.AbstractContextManager[Any]], collectives: Collectives
                 ) -> dict[str, Any]:
        """Every rank predicts its shard; rank 0 merges them (each image once) and computes COCO AP; all ranks get
        the same {metric name: AP} plus the full stats, so their stopping decisions agree."""
        import torch

        from cases.detection.data import to_float
        from cases.detection.evaluator import CocoEvaluator

        assert self.val_set is not None, "check() builds the datasets"
        evaluator = CocoEvaluator(None, self.iou_types, self.config.eval.backend)  # collects; rank 0 scores
        was_training = model.training
        model.eval()
        loader = self.val_loader(pin_memory, collectives.context)
        try:
            with torch.no_grad(), Progress("evaluation", len(loader), unit="batches") as progress:
                for images, targets in loader:
                    images = [to_float(image.to(device, non_blocking=True)) for image in images]
                    with autocast():
                        outputs = model(images)
                    evaluator.add_outputs([int(t["image_id"]) for t in targets], outputs)
                    progress.update(1)
        finally:
            model.train(was_training)
        shards = collectives.gather_objects(evaluator.per_image)
        metrics: dict[str, Any] | None = None
        if collectives.context.is_main:
            merged = CocoEvaluator(self.val_set.ground_truth(), self.iou_types, self.config.eval.backend)
            merged.merge(shards)
            started = time.perf_counter()
            stats = merged.evaluate()
            logger.info("COCO %s AP of %d images (%s): %.1f s", "+".join(self.iou_types), len(merged.per_image),
                        self.config.eval.backend, time.perf_counter() - started)
            metrics = {names.IOU_TYPE_METRIC[t]: stats[t][0] for t in self.iou_types}
            metrics["stats"] = stats
            metrics["summaries"] = merged.summaries
            metrics["images_evaluated"] = len(merged.per_image)
        shared = collectives.broadcast_object(metrics)
        if metrics is not None and self.config.eval.save_predictions:
            shared["predictions"] = merged.results  # rank 0 only: it alone records the run
        return shared

    def targets_met(self, metrics: dict[str, Any]) -> bool:
        targets = self.config.train.targets
        return bool(targets) and all(metrics.get(names.IOU_TYPE_METRIC.get(t, t), -1.0) >= v
                                     for t, v in targets.items())
