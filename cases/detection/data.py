"""COCO2017-layout detection data: annotation checks, dataset, target conversion, flip, grouped batches.

The dataset decodes JPEGs with torchvision.io and converts annotations to torchvision detection targets; masks are
decoded only when the case needs them (Mask R-CNN), because polygon rasterisation is the costliest part of loading.
Images leave the loader as uint8: the conversion to float happens on the device (`to_float`), so worker-to-main
transfers, pinned buffers and host-to-device copies carry a quarter of the bytes. Each annotation file is parsed
and validated once per host into a memory-mapped index (`annotation_index`) that every rank and worker shares;
only the evaluator's process holds a pycocotools COCO object, of the val split, for the ground truth.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import io
import math
import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch.utils.data import Dataset, Sampler
from torchvision.io import ImageReadMode, decode_image, read_file

from cases.detection.annotation_index import REQUIRED_KEYS, AnnotationIndex, checked_document
from suite.errors import DataError, RunError, one_line
from suite.progress import Progress

# The largest image a run decodes: COCO's are under 0.5 MP; a header claiming more (60000x60000 made a run try to
# allocate 43 GB) is refused before the run.
MAX_IMAGE_PIXELS = 100_000_000
# What torchvision's decode_image reads (an image in another format fails only when a worker decodes it).
DECODABLE_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")

SPLITS = ("train", "val")
PROGRESS_CHUNK = 20_000


def split_paths(root: Path, split: str) -> tuple[Path, Path]:
    return root / f"{split}2017", root / "annotations" / f"instances_{split}2017.json"


def load_coco(annotation_file: Path) -> COCO:
    """Parse, check and index a COCO annotation file with pycocotools (the evaluator's ground truth), or raise
    DataError naming the file and what is wrong with it."""
    with checked_document(annotation_file, check_annotations, "loading") as document:
        coco = COCO()
        coco.dataset = document
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
            coco.createIndex()
    return coco


def open_index(annotation_file: Path) -> AnnotationIndex:
    """The file's shared index: mapped from the cache, or parsed and checked (`check_annotations`) first."""
    return AnnotationIndex.open(annotation_file, check_annotations)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_NUMBER_TYPES = frozenset((int, float))


def _all_numbers(values: list[Any]) -> bool:
    """`all(_is_number(v) for v in values)` at C speed: COCO train holds ~20M polygon coordinates."""
    if not set(map(type, values)) <= _NUMBER_TYPES:  # a bool is not a number here (its type is bool)
        return False
    try:
        if math.isfinite(sum(values)):  # an inf or nan anywhere makes the sum one
            return True
    except OverflowError:  # an int too large for a float
        return False
    return all(_is_number(v) for v in values)  # finite values whose sum overflows


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _counted(items: Sequence[Any], progress: Progress | None,
             chunk: int = PROGRESS_CHUNK) -> Iterator[tuple[int, Any]]:
    """(index, item) of each item, reported to `progress` every `chunk` items, not every one (real COCO train has
    ~1M records)."""
    for index, item in enumerate(items):
        if progress is not None and index and index % chunk == 0:
            progress.update(chunk)
        yield index, item
    if progress is not None:
        progress.update(len(items) % chunk or (chunk if items else 0))


def check_annotations(document: Any, source: Path, progress: Progress | None = None) -> None:
    """Every field the loader and the evaluator rely on, with the kind of value they need (COCO's format)."""
    if not isinstance(document, dict):
        raise DataError(f"{source}: expected a JSON object with {', '.join(REQUIRED_KEYS)}")
    for key in REQUIRED_KEYS:
        if not isinstance(document.get(key), list):
            raise DataError(f"{source}: missing or non-list {key!r}")
    if not document["images"]:
        raise DataError(f"{source}: 'images' is empty")
    image_sizes: dict[int, tuple[Any, Any]] = {}  # id -> (height, width), as an RLE's size lists them
    for index, image in _counted(document["images"], progress):
        where = f"{source}: images[{index}]"
        if not isinstance(image, dict) or not all(k in image for k in ("id", "file_name", "width", "height")):
            raise DataError(f"{where} needs id, file_name, width and height")
        if not _is_id(image["id"]) or image["id"] in image_sizes:
            raise DataError(f"{where}: id must be a unique integer, got {image['id']!r}")
        if not isinstance(image["file_name"], str) or not image["file_name"]:
            raise DataError(f"{where}: file_name must be a non-empty string")
        if not _inside_folder(image["file_name"]):
            raise DataError(f"{where}: file_name {image['file_name'][:200]!r} must name a file inside the split's "
                            f"image folder (no absolute path, no '..')")
        if not all(_is_number(image[k]) and image[k] > 0 for k in ("width", "height")):
            raise DataError(f"{where}: width and height must be positive numbers")
        if image["width"] * image["height"] > MAX_IMAGE_PIXELS:
            raise DataError(f"{where}: {image['width']}x{image['height']} is more than the {MAX_IMAGE_PIXELS:,} "
                            f"pixels an image may have")
        image_sizes[image["id"]] = (image["height"], image["width"])
    category_ids = set()
    for index, category in _counted(document["categories"], progress):
        if not isinstance(category, dict) or not _is_id(category.get("id")):
            raise DataError(f"{source}: categories[{index}] needs an integer id")
        category_ids.add(category["id"])
    # pycocotools indexes annotations by id: two with one id make the evaluator score one of them twice and lose
    # the other (ground truth scored against itself gave mAP 0.878, not 1.0).
    annotation_ids: set[int] = set()
    for index, ann in _counted(document["annotations"], progress):
        where = f"{source}: annotations[{index}]"
        if not isinstance(ann, dict) or not all(k in ann for k in ("id", "image_id", "category_id", "bbox")):
            raise DataError(f"{where} needs id, image_id, category_id and bbox")
        if not _is_id(ann["id"]) or ann["id"] in annotation_ids:
            raise DataError(f"{where}: id must be a unique integer, got {ann['id']!r}"
                            + (" (an earlier annotation has it)" if ann["id"] in annotation_ids else ""))
        annotation_ids.add(ann["id"])
        if not _is_id(ann["image_id"]) or ann["image_id"] not in image_sizes:
            raise DataError(f"{where}: image_id {ann['image_id']!r} is not in 'images'")
        if not _is_id(ann["category_id"]) or ann["category_id"] not in category_ids:
            raise DataError(f"{where}: unknown category_id {ann['category_id']!r}")
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            raise DataError(f"{where}: bbox must be 4 numbers [x, y, w, h], got {bbox!r}")
        if bbox[2] < 0 or bbox[3] < 0:
            raise DataError(f"{where}: bbox has negative size {bbox!r}")
        if "iscrowd" in ann and ann["iscrowd"] not in (0, 1):
            raise DataError(f"{where}: iscrowd must be 0 or 1, got {ann['iscrowd']!r}")
        if "area" in ann and not _is_number(ann["area"]):
            raise DataError(f"{where}: area must be a number, got {ann['area']!r}")
        if "segmentation" in ann and not _valid_segmentation(ann["segmentation"]):
            raise DataError(f"{where}: segmentation must be polygons (lists of numbers) or RLE {{counts, size}}")
        segmentation = ann.get("segmentation")
        if isinstance(segmentation, dict):  # an RLE is decoded at its own size: it must be its image's
            height, width = image_sizes[ann["image_id"]]
            if list(segmentation["size"]) != [height, width]:
                raise DataError(f"{where}: RLE size {segmentation['size']!r} is not its image's [height, width] "
                                f"[{height}, {width}]")


def _inside_folder(file_name: str) -> bool:
    """A relative path without '..' (the dataset fingerprint covers the image folder, nothing outside it)."""
    path = PurePosixPath(file_name.replace("\\", "/"))
    return not path.is_absolute() and ".." not in path.parts and not PureWindowsPath(file_name).drive


def _valid_segmentation(segmentation: Any) -> bool:
    if isinstance(segmentation, list):
        return all(isinstance(polygon, list) and len(polygon) >= 6 and len(polygon) % 2 == 0
                   and _all_numbers(polygon) for polygon in segmentation)
    if isinstance(segmentation, dict):
        size = segmentation.get("size")
        return (isinstance(segmentation.get("counts"), (str, list)) and isinstance(size, list) and len(size) == 2
                and all(_is_id(v) and v >= 0 for v in size))
    return False


def check_root(root: Path) -> None:
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist or is not a directory")
    for split in SPLITS:
        image_dir, annotation_file = split_paths(root, split)
        if not image_dir.is_dir():
            raise DataError(f"data root {root}: missing image folder {image_dir.name}/ (COCO2017 layout expected)")
        if not annotation_file.is_file():
            raise DataError(f"data root {root}: missing annotations/{annotation_file.name}")


def check_image_files(dataset: CocoDetection) -> None:
    """Every image the split will read exists in its folder (one listing, not one stat per image), and a name in a
    subfolder resolves inside the folder (a symlink out of it is refused as '..' is)."""
    # a symlink is listed by its own name: it goes through the resolve check below like a name in a subfolder
    present = {entry.name for entry in os.scandir(dataset.image_dir) if not entry.is_symlink()}
    folder = dataset.image_dir.resolve()
    missing, outside = [], []
    for name in (dataset.index.file_name(int(row)) for row in dataset.rows):
        if name in present:
            continue
        path = dataset.image_dir / name
        if not path.resolve().is_relative_to(folder):
            outside.append(name)
        elif not path.is_file():
            missing.append(name)
    if outside:
        raise DataError(f"{dataset.annotation_file}: image {outside[0]!r} resolves outside {dataset.image_dir}/")
    if missing:
        raise DataError(f"{dataset.annotation_file}: {len(missing)} of {len(dataset)} images are not in "
                        f"{dataset.image_dir}/ (first: {missing[0]!r})")


def check_image_headers(dataset: CocoDetection) -> None:
    """Every image the split will read is one decode_image reads, of the size its annotation gives, within
    MAX_IMAGE_PIXELS: read from the file headers only (no decoding), once per set of files (a marker in the
    annotation index's cache folder names the files' sizes and times)."""
    from PIL import Image

    rows = [int(row) for row in dataset.rows]
    names = [dataset.index.file_name(row) for row in rows]
    marker = _headers_marker(dataset, names)
    if marker is not None and marker.is_file():
        return
    arrays = dataset.index.arrays
    with Progress(f"checking {dataset.image_dir.name} image headers", len(rows), unit="images") as progress:
        # a header read costs a file open: progress every 1,000 images
        for _, (row, name) in _counted(list(zip(rows, names, strict=True)), progress, chunk=1000):
            path = dataset.image_dir / name
            expected = (_whole(arrays["width"][row]), _whole(arrays["height"][row]))
            try:
                with Image.open(path) as image:
                    found, size = image.format, image.size
            except Exception as error:  # noqa: BLE001 - whatever PIL raises for a file that is no image
                raise DataError(f"{path}: not a readable image ({one_line(error, 160)})") from None
            if found not in DECODABLE_FORMATS:
                raise DataError(f"{path}: a {found} image; runs decode {', '.join(DECODABLE_FORMATS)} only")
            if size[0] * size[1] > MAX_IMAGE_PIXELS:
                raise DataError(f"{path}: {size[0]}x{size[1]} is more than the {MAX_IMAGE_PIXELS:,} pixels an "
                                f"image may have")
            if size != expected:
                raise DataError(f"{path}: the image is {size[0]}x{size[1]}, its annotation in "
                                f"{dataset.annotation_file.name} says {expected[0]}x{expected[1]}")
    if marker is not None:
        with contextlib.suppress(OSError):  # a read-only cache: the check runs again next time, nothing worse
            marker.write_text("checked\n")


def _headers_marker(dataset: CocoDetection, names: list[str]) -> Path | None:
    """The marker file for this exact set of image files (path, size, modification time), or None without a
    cache folder to keep it in."""
    if dataset.index.folder is None:
        return None
    digest = hashlib.sha256(str(dataset.image_dir.resolve()).encode())
    for name in names:
        try:
            stat = (dataset.image_dir / name).stat()
        except OSError:
            return None
        digest.update(f"\0{name}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return dataset.index.folder / f"images-checked-{digest.hexdigest()[:32]}"


def check_labels(dataset: CocoDetection, num_classes: int) -> None:
    """The categories the split's boxes use are classes of the model (torchvision indexes them directly)."""
    used = np.unique(dataset.index.arrays["category_id"][dataset.annotation_mask()])
    outside = [int(c) for c in used if not 0 <= c < num_classes]
    if outside:
        raise DataError(f"{dataset.annotation_file}: category ids {outside[:5]} are outside the model's "
                        f"{num_classes} classes (model.num_classes: ids must be 0..{num_classes - 1})")


def check_segmentations(dataset: CocoDetection) -> None:
    """Every box a mask-predicting case trains on has a segmentation to rasterise."""
    arrays = dataset.index.arrays
    lacking = np.flatnonzero(dataset.annotation_mask() & (arrays["iscrowd"] == 0) & (arrays["seg_kind"] == 0))
    if len(lacking):
        row = int(dataset.index.image_rows()[lacking[0]])
        raise DataError(f"{dataset.annotation_file}: {len(lacking)} annotations have no segmentation, which masks "
                        f"need (first: on image id {int(arrays['image_id'][row])})")


def _usable_rows(index: AnnotationIndex) -> np.ndarray:
    """The published harness's rule (FlagPerf dataloaders/dataloader.py): keep an image if any of its annotations,
    crowd ones included, has a box wider and taller than 1 pixel. (torchvision's reference counts non-crowd boxes
    only; an image whose only boxes are crowd regions then drops out, and an epoch has other images than the
    published runs'.) Such an image trains with an empty target: crowd regions are never training targets."""
    arrays = index.arrays
    usable = (arrays["bbox"][:, 2] > 1) & (arrays["bbox"][:, 3] > 1)
    return np.flatnonzero(np.bincount(index.image_rows()[usable], minlength=len(index)))


def to_float(image: torch.Tensor) -> torch.Tensor:
    """uint8 CHW in [0, 255] -> float32 in [0, 1], what torchvision's detectors take."""
    return image.float().div_(255)


def _mask(segmentation: list[np.ndarray] | dict[str, Any], height: int, width: int) -> np.ndarray:
    """One annotation's HxW uint8 mask, as pycocotools' `COCO.annToMask` rasterises it."""
    if isinstance(segmentation, list):
        if not segmentation:
            return np.zeros((height, width), dtype=np.uint8)
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif not isinstance(segmentation["counts"], bytes):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle)


def _whole(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


class ImageError(RunError):
    """An image the run could not read; the message names the file."""


class CocoDetection(Dataset):
    """One split of a COCO2017-layout dataset, yielding (image uint8 CHW, torchvision target dict).

    Holds the split's shared annotation index and a numpy array of the rows it uses: no per-image Python objects
    that DataLoader workers would copy as they read them.
    """

    def __init__(self, root: Path, split: str, *, with_masks: bool, hflip_prob: float = 0.0,
                 drop_empty: bool = False, limit: int | None = None) -> None:
        self.image_dir, annotation_file = split_paths(root, split)
        self.annotation_file = annotation_file
        self.index = open_index(annotation_file)
        rows = _usable_rows(self.index) if drop_empty else np.arange(len(self.index))
        if limit is not None:
            rows = rows[:limit]
        if not len(rows):
            raise DataError(f"{annotation_file}: no usable images in the {split} split")
        self.rows = rows
        self.with_masks = with_masks
        self.hflip_prob = hflip_prob
        self._ground_truth: COCO | None = None

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def ids(self) -> list[int]:
        """The COCO image ids of the split's images, in the dataset's order."""
        return self.index.arrays["image_id"][self.rows].tolist()

    @property
    def images_in_file(self) -> int:
        return len(self.index)

    def annotation_mask(self) -> np.ndarray:
        """Which of the file's annotations belong to the images this split uses."""
        used = np.zeros(len(self.index), dtype=bool)
        used[self.rows] = True
        return used[self.index.image_rows()]

    def ground_truth(self) -> COCO:
        """pycocotools' index of the file, for the evaluator: built on first use, in the process that scores."""
        if self._ground_truth is None:
            self._ground_truth = load_coco(self.annotation_file)
        return self._ground_truth

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_ground_truth": None}  # workers never need the evaluator's COCO object

    def aspect_ratios(self) -> list[float]:
        """Width/height of each image from the annotations, without decoding any image."""
        arrays = self.index.arrays
        return (arrays["width"][self.rows] / arrays["height"][self.rows]).tolist()

    def image(self, index: int) -> torch.Tensor:
        """Image `index` as uint8 CHW RGB, without its target or any augmentation."""
        path = self.image_dir / self.index.file_name(int(self.rows[index]))
        try:
            return decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
        except (RuntimeError, OSError, ValueError) as error:  # a file changed since the checks before the run
            raise ImageError(f"{path}: cannot decode the image ({one_line(error, 160)})") from error

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        row = int(self.rows[index])
        image = self.image(index)
        target = self.convert_target(row, image.shape[-2], image.shape[-1])
        if self.hflip_prob and torch.rand(()) < self.hflip_prob:
            image, target = hflip(image, target)
        return image, target

    def convert_target(self, row: int, height: int, width: int) -> dict[str, torch.Tensor]:
        """Image `row`'s non-crowd annotations as a torchvision target (xyxy boxes clipped to the image)."""
        arrays = self.index.arrays
        span = self.index.annotations(row)
        anns = np.flatnonzero(arrays["iscrowd"][span] == 0) + span.start
        boxes = torch.from_numpy(arrays["bbox"][anns]).to(torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        boxes[:, 0::2].clamp_(min=0, max=width)
        boxes[:, 1::2].clamp_(min=0, max=height)
        keep = (boxes[:, 3] > boxes[:, 1]) & (boxes[:, 2] > boxes[:, 0])
        target = {
            "boxes": boxes[keep],
            "labels": torch.from_numpy(arrays["category_id"][anns])[keep],
            "image_id": torch.tensor(int(arrays["image_id"][row])),
            "area": torch.from_numpy(arrays["area"][anns]).to(torch.float32)[keep],
            "iscrowd": torch.zeros(int(keep.sum()), dtype=torch.int64),
        }
        if self.with_masks:
            # pycocotools rasterises at the size the annotations give the image, as `COCO.annToMask` does.
            mask_height, mask_width = _whole(arrays["height"][row]), _whole(arrays["width"][row])
            masks = (np.stack([_mask(self.index.segmentation(int(a)), mask_height, mask_width) for a in anns])
                     if len(anns) else np.zeros((0, height, width)))
            target["masks"] = torch.as_tensor(masks, dtype=torch.uint8).reshape(-1, height, width)[keep]
        return target


def hflip(image: torch.Tensor, target: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    width = image.shape[-1]
    target = dict(target)
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    target["boxes"] = boxes
    if "masks" in target:
        target["masks"] = target["masks"].flip(-1)
    return image.flip(-1), target


def collate(batch: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(zip(*batch, strict=False))


# Aspect-ratio grouping as in torchvision's detection references (group_by_aspect_ratio.py, BSD-3-Clause).
def aspect_ratio_groups(aspect_ratios: Sequence[float], factor: int) -> list[int]:
    if factor < 0:
        return [0] * len(aspect_ratios)
    bins = [1.0] if factor == 0 else sorted((2 ** np.linspace(-1, 1, 2 * factor + 1)).tolist())
    return [bisect.bisect_right(bins, r) for r in aspect_ratios]


class GroupedBatchSampler(Sampler[list[int]]):
    """Batches whose images share an aspect-ratio group, so padding wastes little compute.

    Yields exactly ceil(len(sampler) / batch_size) batches per pass; the tail is filled from the largest groups.
    """

    def __init__(self, sampler: Sampler[int], group_ids: Sequence[int], batch_size: int) -> None:
        self.sampler = sampler
        self.group_ids = list(group_ids)
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[list[int]]:
        buffers: dict[int, list[int]] = defaultdict(list)
        samples_per_group: dict[int, list[int]] = defaultdict(list)
        emitted = 0
        for index in self.sampler:
            group = self.group_ids[index]
            buffers[group].append(index)
            samples_per_group[group].append(index)
            if len(buffers[group]) == self.batch_size:
                yield buffers.pop(group)
                emitted += 1
        expected = len(self)
        if emitted < expected:
            for group, _ in sorted(buffers.items(), key=lambda kv: len(kv[1]), reverse=True):
                remaining = self.batch_size - len(buffers[group])
                pool = samples_per_group[group]
                buffers[group].extend((pool * math.ceil(remaining / len(pool)))[:remaining])
                yield buffers.pop(group)
                emitted += 1
                if emitted == expected:
                    break

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)  # type: ignore[arg-type]
