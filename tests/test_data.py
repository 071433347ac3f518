"""Synthetic data generation, COCO loading and target conversion, flips, grouped batches, annotation checks."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from torch.utils.data import SequentialSampler

from cases.detection.data import (
    CocoDetection,
    GroupedBatchSampler,
    aspect_ratio_groups,
    check_root,
    hflip,
    load_coco,
    open_index,
)
from cases.detection.synthetic import COCO_CATEGORIES, SHAPES, SyntheticSpec, ensure_dataset
from suite.errors import DataError
from tests.helpers import COCO_FIXTURE


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shapes")
    from tests.helpers import invoke

    result = invoke("make-data", "--out", str(out), "--train", "12", "--val", "4", "--size", "160x120")
    assert result.exit_code == 0, result.stderr
    return out


def test_make_data_writes_coco2017_layout(shapes_root: Path) -> None:
    check_root(shapes_root)
    assert len(list((shapes_root / "train2017").glob("*.jpg"))) == 12
    assert len(list((shapes_root / "val2017").glob("*.jpg"))) == 4
    document = json.loads((shapes_root / "annotations" / "instances_train2017.json").read_text())
    assert [(c["id"], c["name"]) for c in document["categories"]] == list(COCO_CATEGORIES)
    assert {img["width"] for img in document["images"]} == {160}
    used = {a["category_id"] for a in document["annotations"]}
    assert used <= {category for category, _ in SHAPES.values()}
    for ann in document["annotations"]:
        x, y, w, h = ann["bbox"]
        polygon = np.array(ann["segmentation"][0]).reshape(-1, 2)
        assert polygon[:, 0].min() == pytest.approx(x, abs=0.01)
        assert polygon[:, 1].max() == pytest.approx(y + h, abs=0.02)
        assert 0 < ann["area"] <= w * h + 0.1  # both rounded to 0.01


def test_shapes_are_drawn_where_annotated(shapes_root: Path) -> None:
    """The pixels inside each polygon carry the shape's colour, so a detector has something to learn."""
    coco = load_coco(shapes_root / "annotations" / "instances_train2017.json")
    colours = {category: np.array(rgb) for category, rgb in SHAPES.values()}
    for ann in coco.dataset["annotations"][:10]:
        info = coco.imgs[ann["image_id"]]
        pixels = np.asarray(Image.open(shapes_root / "train2017" / info["file_name"]).convert("RGB"))
        mask = coco.annToMask(ann).astype(bool)
        mean = pixels[mask].mean(axis=0)
        assert np.abs(mean - colours[ann["category_id"]]).max() < 45


def test_ensure_dataset_is_cached(tmp_path: Path) -> None:
    spec = SyntheticSpec(train=3, val=2, width=64, height=64, seed=5)
    first = ensure_dataset(spec, tmp_path)
    stamp = (first / "annotations" / "instances_train2017.json").stat().st_mtime_ns
    assert ensure_dataset(spec, tmp_path) == first
    assert (first / "annotations" / "instances_train2017.json").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("with_masks", [False, True], ids=["boxes-only", "with-masks"])
def test_dataset_targets(shapes_root: Path, with_masks: bool) -> None:
    dataset = CocoDetection(shapes_root, "train", with_masks=with_masks, drop_empty=True)
    image, target = dataset[0]
    assert image.shape == (3, 120, 160) and image.dtype == torch.uint8 and image.max() > 1  # float on the device
    assert target["boxes"].shape[1] == 4 and len(target["labels"]) == len(target["boxes"])
    assert ("masks" in target) is with_masks
    if with_masks:
        assert target["masks"].shape == (len(target["boxes"]), 120, 160)


def test_real_coco_annotations_crowd_rle_and_polygons(tmp_path: Path) -> None:
    """Real COCO val2014 annotations: crowd (RLE) objects are dropped from targets, polygons become masks."""
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "train2017").mkdir()
    document = json.loads((COCO_FIXTURE / "instances_val2014_100.json").read_text())
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(document))
    crowd_image = next(a["image_id"] for a in document["annotations"] if a["iscrowd"])
    info = next(i for i in document["images"] if i["id"] == crowd_image)
    Image.new("RGB", (info["width"], info["height"]), (90, 90, 90)).save(root / "train2017" / info["file_name"])

    dataset = CocoDetection(root, "train", with_masks=True)
    index = dataset.ids.index(crowd_image)
    _, target = dataset[index]
    anns = [a for a in document["annotations"] if a["image_id"] == crowd_image]
    plain = [a for a in anns if not a["iscrowd"]]
    assert len(target["labels"]) == len(plain) < len(anns)
    assert target["labels"].tolist() == [a["category_id"] for a in plain]
    first = plain[0]
    expected = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(
        first["segmentation"], info["height"], info["width"])))
    assert torch.equal(target["masks"][0], torch.as_tensor(expected))
    x, y, w, h = first["bbox"]
    assert target["boxes"][0].tolist() == pytest.approx([x, y, x + w, y + h], abs=1e-3)


def test_hflip_mirrors_boxes_and_masks() -> None:
    image = torch.zeros(3, 4, 10)
    image[:, :, 1] = 1
    masks = torch.zeros(1, 4, 10, dtype=torch.uint8)
    masks[0, :, 1:3] = 1
    target = {"boxes": torch.tensor([[1.0, 0.0, 3.0, 4.0]]), "masks": masks}
    flipped, new = hflip(image, target)
    assert flipped[0, 0, 8] == 1
    assert new["boxes"].tolist() == [[7.0, 0.0, 9.0, 4.0]]
    assert new["masks"][0, 0].nonzero().flatten().tolist() == [7, 8]
    assert target["boxes"].tolist() == [[1.0, 0.0, 3.0, 4.0]]  # input untouched


def test_grouped_batches_share_aspect_ratio_group() -> None:
    ratios = [0.5, 2.0, 0.5, 2.0, 0.5, 2.0, 0.5, 1.0, 1.0]
    groups = aspect_ratio_groups(ratios, 3)
    sampler = GroupedBatchSampler(SequentialSampler(range(len(ratios))), groups, batch_size=2)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 5
    full = [b for b in batches[:-1]]
    assert all(len({groups[i] for i in b}) == 1 for b in full)
    assert all(len(b) == 2 for b in batches)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.pop("images"), "missing or non-list 'images'"),
    (lambda d: d.update(images=[]), "'images' is empty"),
    (lambda d: d["annotations"][0].update(bbox=[1, 1, -4, 2]), "bbox has negative size"),
    (lambda d: d["annotations"][0].update(category_id=12), "unknown category_id 12"),
    (lambda d: d["annotations"][0].update(image_id=-1), "image_id -1 is not in 'images'"),
    (lambda d: d["images"][0].pop("file_name"), "images[0] needs id, file_name, width and height"),
    (lambda d: d["annotations"][1].update(id=d["annotations"][0]["id"]), r"annotations\[1\]: id must be a unique "
     r"integer, got \d+ \(an earlier annotation has it\)"),
    (lambda d: _first_rle(d).update(size=[60000, 60000]), r"RLE size \[60000, 60000\] is not its image's"),
], ids=["no-images", "empty-images", "negative-box", "unknown-category", "unknown-image", "image-fields",
        "duplicate-annotation-id", "rle-size"])
@pytest.mark.parametrize("reader", [load_coco, open_index], ids=["evaluator", "shared-index"])
def test_malformed_annotations_are_data_errors(tmp_path: Path, mutate, message: str, reader) -> None:
    document = json.loads((COCO_FIXTURE / "instances_val2014_100.json").read_text())
    mutate(document)
    path = tmp_path / "instances_train2017.json"
    path.write_text(json.dumps(document))
    literal = not message.startswith(("annotations", "RLE"))  # the last two are patterns already
    pattern = message.replace("[", r"\[").replace("]", r"\]") if literal else message
    with pytest.raises(DataError, match=pattern):
        reader(path)


def _first_rle(document: dict) -> dict:
    return next(a["segmentation"] for a in document["annotations"] if isinstance(a.get("segmentation"), dict))


def test_validation_boxes_outside_the_models_classes_are_refused_as_trainings_are(shapes_root: Path,
                                                                                 tmp_path: Path) -> None:
    from suite.config import resolve
    from suite.launch.checks import prepare

    root = tmp_path / "root"
    shutil.copytree(shapes_root, root)
    val = root / "annotations" / "instances_val2017.json"
    document = json.loads(val.read_text())
    document["categories"].append({"id": 95, "name": "beyond", "supercategory": "none"})
    document["annotations"][0]["category_id"] = 95
    val.write_text(json.dumps(document))
    with pytest.raises(DataError, match=r"instances_val2017.json: category ids \[95\] are outside the model's 91"):
        prepare(resolve("faster_rcnn", "cpu", "1x1", ["data.workers=0"]), data_root=root)


@pytest.mark.parametrize("reader", [load_coco, open_index], ids=["evaluator", "shared-index"])
def test_not_json_and_missing_root(tmp_path: Path, reader) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        reader(path)
    with pytest.raises(DataError, match="does not exist"):
        check_root(tmp_path / "nowhere")
    (tmp_path / "train2017").mkdir()
    with pytest.raises(DataError, match="missing annotations/instances_train2017.json"):
        check_root(tmp_path)


def test_training_images_are_kept_by_the_publishers_rule(tmp_path: Path) -> None:
    """An image trains when any of its annotations, crowd ones included, is wider and taller than 1 pixel (the
    published harness's loader), so an epoch holds the images the published runs' epochs held: a crowd-only image
    stays (with no training targets), one with only degenerate boxes or none drops out."""
    document = json.loads((COCO_FIXTURE / "instances_val2014_100.json").read_text())
    kept, crowd_only, thin, bare = (info["id"] for info in document["images"][:4])
    for ann in document["annotations"]:
        if ann["image_id"] == crowd_only:
            ann["iscrowd"] = 1
        elif ann["image_id"] == thin:
            ann["bbox"][2] = 1.0  # 1 pixel wide: not "above 1"
    document["annotations"] = [a for a in document["annotations"] if a["image_id"] in (kept, crowd_only, thin)]
    document["images"] = document["images"][:4]
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(document))

    dataset = CocoDetection(root, "train", with_masks=False, drop_empty=True)
    assert sorted(dataset.ids) == sorted([kept, crowd_only])
    assert dataset.images_in_file == 4
    row = dataset.ids.index(crowd_only)
    target = dataset.convert_target(int(dataset.rows[row]), 480, 640)
    assert len(target["boxes"]) == 0 and len(target["labels"]) == 0  # crowd regions are never targets


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A JPEG whose header says width x height (its data is a 16x16 image's): a decoder would allocate for the
    header's size."""
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")  # start of frame: length (2), precision (1), height (2), width (2)
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def _probe(root: Path, split: str, change: str) -> None:
    """One of the probes that got past the checks: an image file or name that is not what the annotation says."""
    annotation_file = root / "annotations" / f"instances_{split}2017.json"
    document = json.loads(annotation_file.read_text())
    first = document["images"][0]
    image = root / f"{split}2017" / first["file_name"]
    if change == "parent-path":
        first["file_name"] = f"../{split}2017/{first['file_name']}"
    elif change == "absolute-path":
        first["file_name"] = "/etc/hostname"
    elif change == "symlink-out":
        (root / f"{split}2017" / "out.jpg").symlink_to(root / "annotations" / annotation_file.name)
        first["file_name"] = "out.jpg"
    elif change == "zero-bytes":
        image.write_bytes(b"")
    elif change == "text":
        image.write_text("not an image at all\n")
    elif change == "huge-header":
        image.write_bytes(_jpeg_declaring(60000, 60000))
    elif change == "huge-annotation":
        first["width"] = first["height"] = 60000
    elif change == "wrong-size":
        image.write_bytes(_jpeg_declaring(first["width"] + 1, first["height"]))
    annotation_file.write_text(json.dumps(document))


@pytest.mark.parametrize(("change", "message"), [
    ("parent-path", "must name a file inside the split's image folder (no absolute path, no '..')"),
    ("absolute-path", "file_name '/etc/hostname' must name a file inside the split's image folder"),
    ("symlink-out", "image 'out.jpg' resolves outside"),
    ("zero-bytes", "{name}: not a readable image (UnidentifiedImageError"),
    ("text", "{name}: not a readable image (UnidentifiedImageError"),
    ("huge-header", "{name}: not a readable image (DecompressionBombError"),
    ("huge-annotation", "60000x60000 is more than the 100,000,000 pixels an image may have"),
    ("wrong-size", "{name}: the image is 161x120, its annotation in instances_val2017.json says 160x120"),
])
@pytest.mark.parametrize("split", ["train", "val"])
def test_images_that_are_not_what_their_annotation_says_are_refused_before_the_run(
        shapes_root: Path, tmp_path: Path, change: str, message: str, split: str) -> None:
    from suite.config import resolve
    from suite.launch.checks import prepare

    root = tmp_path / "root"
    shutil.copytree(shapes_root, root)
    _probe(root, split, change)
    document = json.loads((root / "annotations" / f"instances_{split}2017.json").read_text())
    expected = message.replace("val2017", f"{split}2017").replace("{name}", document["images"][0]["file_name"])
    with pytest.raises(DataError, match=re.escape(expected)):
        prepare(resolve("faster_rcnn", "cpu", "1x1", ["data.workers=0"]), data_root=root)
