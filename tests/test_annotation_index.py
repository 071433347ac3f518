"""The shared annotation index: the same targets as pycocotools' index gives, built once per host and mapped after.

The reference below is the dataset's conversion as it read pycocotools' `COCO` object before the shared index
(`imgToAnns`, `annToMask`): every field of every image's target must come out identical, masks included, on real
COCO annotations (crowd RLE, polygons, plus RLE written in both of COCO's forms) and on the synthetic shapes.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from cases.detection import annotation_index
from cases.detection.data import CocoDetection, load_coco, open_index
from tests.helpers import COCO_FIXTURE, invoke


def _reference_target(coco: COCO, image_id: int, height: int, width: int, with_masks: bool
                      ) -> dict[str, torch.Tensor]:
    anns = [a for a in coco.imgToAnns[image_id] if a.get("iscrowd", 0) == 0]
    boxes = torch.as_tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    boxes[:, 0::2].clamp_(min=0, max=width)
    boxes[:, 1::2].clamp_(min=0, max=height)
    keep = (boxes[:, 3] > boxes[:, 1]) & (boxes[:, 2] > boxes[:, 0])
    target = {
        "boxes": boxes[keep],
        "labels": torch.as_tensor([a["category_id"] for a in anns], dtype=torch.int64)[keep],
        "image_id": torch.tensor(image_id),
        "area": torch.as_tensor([a.get("area", 0.0) for a in anns], dtype=torch.float32)[keep],
        "iscrowd": torch.zeros(int(keep.sum()), dtype=torch.int64),
    }
    if with_masks:
        masks = np.stack([coco.annToMask(a) for a in anns]) if anns else np.zeros((0, height, width))
        target["masks"] = torch.as_tensor(masks, dtype=torch.uint8).reshape(-1, height, width)[keep]
    return target


def _assert_same_items(dataset: CocoDetection, coco: COCO, drop_empty: bool) -> None:
    """Every image, every field: same ids in the same order, same dtypes, same values."""
    expected_ids = sorted(coco.imgs)
    if drop_empty:  # torchvision's rule, as the old dataset applied it to imgToAnns
        expected_ids = [i for i in expected_ids if any(a.get("iscrowd", 0) == 0 and a["bbox"][2] > 1
                                                       and a["bbox"][3] > 1 for a in coco.imgToAnns[i])]
    assert dataset.ids == expected_ids
    assert dataset.aspect_ratios() == [coco.imgs[i]["width"] / coco.imgs[i]["height"] for i in expected_ids]
    assert dataset.images_in_file == len(coco.imgs)
    for index, image_id in enumerate(expected_ids):
        info = coco.imgs[image_id]
        assert dataset.index.file_name(int(dataset.rows[index])) == info["file_name"]
        got = dataset.convert_target(int(dataset.rows[index]), info["height"], info["width"])
        want = _reference_target(coco, image_id, info["height"], info["width"], dataset.with_masks)
        assert got.keys() == want.keys()
        for field, value in want.items():
            assert got[field].dtype == value.dtype, (image_id, field)
            assert torch.equal(got[field], value), (image_id, field)


def _fixture_with_every_segmentation_form(folder: Path) -> Path:
    """Real COCO val2014 annotations, with two non-crowd objects re-encoded as RLE: one as COCO's compressed
    string, one as an uncompressed counts list (the form crowd objects use), so every stored form is decoded."""
    document = json.loads((COCO_FIXTURE / "instances_val2014_100.json").read_text())
    coco = COCO()
    coco.dataset = json.loads(json.dumps(document))
    coco.createIndex()
    polygons = [a for a in document["annotations"] if not a["iscrowd"] and isinstance(a["segmentation"], list)]
    compressed, uncompressed = polygons[0], polygons[-1]
    mask = coco.annToMask(compressed)
    rle = mask_utils.encode(np.asfortranarray(mask))
    compressed["segmentation"] = {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}
    counts, value, run = [], 0, 0  # runs of 0s and 1s in column-major order, starting with 0s
    for pixel in coco.annToMask(uncompressed).flatten(order="F").tolist():
        if pixel == value:
            run += 1
        else:
            counts.append(run)
            value, run = pixel, 1
    counts.append(run)
    info = coco.imgs[uncompressed["image_id"]]
    uncompressed["segmentation"] = {"size": [info["height"], info["width"]], "counts": counts}
    assert any(a["iscrowd"] and isinstance(a["segmentation"]["counts"], list) for a in document["annotations"])
    root = folder / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "train2017").mkdir()
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(document))
    return root


@pytest.mark.parametrize("with_masks", [False, True], ids=["boxes", "masks"])
@pytest.mark.parametrize("drop_empty", [False, True], ids=["all-images", "drop-empty"])
def test_real_annotations_give_the_same_targets_as_pycocotools(tmp_path: Path, with_masks: bool,
                                                               drop_empty: bool) -> None:
    root = _fixture_with_every_segmentation_form(tmp_path)
    dataset = CocoDetection(root, "train", with_masks=with_masks, drop_empty=drop_empty)
    assert set(np.unique(dataset.index.arrays["seg_kind"]).tolist()) == {
        annotation_index.POLYGONS, annotation_index.RLE_COUNTS, annotation_index.RLE_STRING}
    _assert_same_items(dataset, load_coco(root / "annotations" / "instances_train2017.json"), drop_empty)


def test_synthetic_images_give_the_same_items_as_pycocotools(tmp_path: Path) -> None:
    root = tmp_path / "shapes"
    result = invoke("make-data", "--out", str(root), "--train", "6", "--val", "2", "--size", "96x64")
    assert result.exit_code == 0, result.stderr
    coco = load_coco(root / "annotations" / "instances_train2017.json")
    dataset = CocoDetection(root, "train", with_masks=True, drop_empty=True)
    _assert_same_items(dataset, coco, drop_empty=True)
    image, target = dataset[0]  # the whole item, decoded image included
    assert image.shape == (3, 64, 96) and target["masks"].shape[1:] == (64, 96)


def _item_in_spawned_worker(dataset: CocoDetection, queue: Any) -> None:
    _, target = dataset[0]
    queue.put((type(dataset.index.arrays["bbox"]).__name__, target["boxes"].tolist()))


def test_the_index_is_built_once_then_mapped_by_every_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    monkeypatch.setenv("ACCELBENCH_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "shapes"
    assert invoke("make-data", "--out", str(root), "--train", "4", "--val", "2", "--size", "64x64").exit_code == 0
    annotation_file = root / "annotations" / "instances_train2017.json"
    parses: list[Path] = []
    parse = annotation_index.parse_annotation_file
    monkeypatch.setattr(annotation_index, "parse_annotation_file", lambda path: parses.append(path) or parse(path))

    first = CocoDetection(root, "train", with_masks=False)
    second = CocoDetection(root, "train", with_masks=False)
    assert parses == [annotation_file]  # the second dataset mapped what the first built
    assert isinstance(second.index.arrays["bbox"], np.memmap)
    (folder,) = (tmp_path / "cache" / "annotation-index").glob("*-v*[0-9]")
    assert folder.name.startswith(second.index.fingerprint.sha256[:32])

    # A spawned DataLoader worker gets the folder's name, not a copy of the arrays, and maps the same files.
    assert len(pickle.dumps(first)) < 4096
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    worker = context.Process(target=_item_in_spawned_worker, args=(first, queue))
    worker.start()
    kind, boxes = queue.get(timeout=120)
    worker.join(timeout=60)
    assert kind == "memmap" and boxes == first[0][1]["boxes"].tolist()

    # Changed content is a new index; a damaged one is rebuilt, with a warning.
    document = json.loads(annotation_file.read_text())
    document["annotations"][0]["bbox"][2] += 1
    annotation_file.write_text(json.dumps(document))
    changed = CocoDetection(root, "train", with_masks=False)
    assert len(parses) == 2 and changed.index.folder != first.index.folder
    expected = changed[0][1]["boxes"]
    damaged = changed.index.folder / "bbox.npy"
    damaged.unlink()  # a new file, as a disk error would leave it: `changed` keeps the pages it mapped
    damaged.write_bytes(b"\x93NUMPY broken")
    parses.clear()
    rebuilt = CocoDetection(root, "train", with_masks=False)
    assert parses == [annotation_file]
    assert torch.equal(rebuilt[0][1]["boxes"], expected)


def test_an_unwritable_cache_costs_speed_not_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "shapes"
    assert invoke("make-data", "--out", str(root), "--train", "3", "--val", "2", "--size", "64x64").exit_code == 0
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("ACCELBENCH_CACHE", str(blocker))
    monkeypatch.setattr(annotation_index, "_warned_unwritable", set())
    caplog.set_level(logging.WARNING, logger="cases.detection.annotation_index")

    datasets = [CocoDetection(root, split, with_masks=True) for split in ("train", "val", "train")]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "not writable" in warnings[0] and str(blocker) in warnings[0]
    assert all(d.index.folder is None for d in datasets)
    assert datasets[0][0][1]["masks"].shape[0] == len(datasets[0][0][1]["boxes"])
    assert pickle.loads(pickle.dumps(datasets[0])).ids == datasets[0].ids  # held in memory: pickled whole


def test_the_evaluator_alone_holds_a_coco_object(tmp_path: Path) -> None:
    root = tmp_path / "shapes"
    assert invoke("make-data", "--out", str(root), "--train", "3", "--val", "2", "--size", "64x64").exit_code == 0
    val = CocoDetection(root, "val", with_masks=False)
    assert val._ground_truth is None  # nothing parsed into pycocotools until the scoring rank asks
    ground_truth = val.ground_truth()
    assert ground_truth is val.ground_truth() and sorted(ground_truth.imgs) == val.ids
    assert pickle.loads(pickle.dumps(val))._ground_truth is None  # workers never receive it
    assert open_index(root / "annotations" / "instances_val2017.json").folder == val.index.folder


def _damage_bbox_truncated(folder: Path) -> None:
    (folder / "bbox.npy").write_bytes(b"")  # truncate -s 0: numpy's EOFError once became "interrupted by SIGINT"


def _damage_offsets_deleted(folder: Path) -> None:
    (folder / "ann_offsets.npy").unlink()  # was a KeyError traceback


def _damage_fewer_image_rows(folder: Path) -> None:
    ids = np.load(folder / "image_id.npy")
    np.save(folder / "image_id.npy", ids[:-1])  # was a ValueError traceback


def _damage_changed_labels(folder: Path) -> None:
    labels = np.load(folder / "category_id.npy")
    np.save(folder / "category_id.npy", (labels % 90) + 1)  # same shape and dtype: was used silently


@pytest.mark.parametrize("damage", [_damage_bbox_truncated, _damage_offsets_deleted, _damage_fewer_image_rows,
                                    _damage_changed_labels], ids=["truncated", "deleted", "short", "changed"])
def test_a_damaged_index_is_rebuilt_with_one_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture, damage: Any) -> None:
    monkeypatch.setenv("ACCELBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(annotation_index, "_warned_damaged", set())
    root = tmp_path / "shapes"
    assert invoke("make-data", "--out", str(root), "--train", "4", "--val", "2", "--size", "64x64").exit_code == 0
    first = CocoDetection(root, "train", with_masks=False)
    expected = {name: np.array(array) for name, array in first.index.arrays.items()}
    damage(first.index.folder)
    caplog.set_level(logging.WARNING, logger="cases.detection.annotation_index")
    again = CocoDetection(root, "train", with_masks=False)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "is damaged" in warnings[0] and "building it again" in warnings[0], warnings
    assert again.index.folder == first.index.folder and isinstance(again.index.arrays["bbox"], np.memmap)
    assert all(np.array_equal(again.index.arrays[name], expected[name]) for name in expected)


def test_a_truncated_index_file_is_a_warning_for_the_cli_never_an_interrupt(tmp_path: Path) -> None:
    from tests.helpers import LIGHT, run_cli

    cache = {"ACCELBENCH_CACHE": str(tmp_path / "cache")}
    root = tmp_path / "shapes"
    assert invoke("make-data", "--out", str(root), "--train", "4", "--val", "2", "--size", "64x64").exit_code == 0
    args = ["doctor", "--vendor", "cpu", "--case", "faster_rcnn", "--data-root", str(root)]
    assert run_cli(*args, env=cache).returncode == 0
    for bbox in (tmp_path / "cache" / "annotation-index").glob("*/bbox.npy"):
        bbox.write_bytes(b"")
    done = run_cli("run", "--case", "faster_rcnn", "--vendor", "cpu", "--data-root", str(root), *LIGHT, env=cache)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "interrupted" not in done.stderr and "is damaged" in done.stderr and "Traceback" not in done.stderr


def test_a_staging_folder_left_by_a_killed_builder_is_removed(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCELBENCH_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "shapes"
    assert invoke("make-data", "--out", str(root), "--train", "4", "--val", "2", "--size", "64x64").exit_code == 0
    index_root = tmp_path / "cache" / "annotation-index"
    index_root.mkdir(parents=True)
    dead = multiprocessing.get_context("spawn").Process(target=int)
    dead.start()
    dead.join()
    leftover = index_root / f"0123abcd-10-20-v{annotation_index.FORMAT}.{dead.pid}.x1y2"
    (leftover).mkdir()
    (leftover / "bbox.npy").write_bytes(b"half")
    live = index_root / f"4567abcd-10-20-v{annotation_index.FORMAT}.{os.getpid()}.z3"
    live.mkdir()  # a builder still at work (this process) keeps its folder
    CocoDetection(root, "train", with_masks=False)
    assert not leftover.exists() and live.is_dir()
