"""Generated malformed input (hypothesis): configs, --set values, names, COCO annotation files, spool journals and
event logs, hostile ones included (not UTF-8, nested thousands deep, alias bombs, huge numbers).

Everything a user types or points at goes through the same checks the CLI runs before creating a run. The property:
each input is either accepted or rejected with a BenchError (one line, exit 2) - never another exception, which would
reach the user as a traceback - and within a time and memory bound (`bounded`), so no input can hang the process or
eat the machine's memory before it is refused.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from suite.config import flatten, resolve
from suite.engine.compliance import check_log
from suite.errors import BenchError
from suite.launch.checks import prepare
from suite.tracking.spool import InProgressError, sync

KEYS = sorted(flatten(resolve("retinanet", "cpu", "1x1").config.model_dump()))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=6)
# CI sees the same 120 examples per test every time (a fixed seed: no flaky failures), 360 in all; set
# ACCELBENCH_FUZZ_EXAMPLES=1000 to explore fresh random inputs locally.
EXPLORE = int(os.environ.get("ACCELBENCH_FUZZ_EXAMPLES", "0"))
SETTINGS = settings(max_examples=EXPLORE or 120, derandomize=not EXPLORE, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# The costlier properties (each example resolves twice, or uploads into a store) see half as many.
JOURNAL_SETTINGS = settings(SETTINGS, max_examples=EXPLORE or 60)


@pytest.fixture
def warm(tmp_path: Path) -> None:
    """Import what the checks import lazily (the case's torchvision models, pycocotools, MLflow's store) before
    any input is timed: the bound is on the input's cost, not on the first import's."""
    root = tmp_path / "warm"
    for split in ("train2017", "val2017"):
        (root / split).mkdir(parents=True)
        for image in _valid_document()["images"]:  # real JPEGs of the annotated size: their headers are checked
            Image.new("RGB", (image["width"], image["height"])).save(root / split / image["file_name"], "JPEG")
    (root / "annotations").mkdir()
    for split in ("train", "val"):
        (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(_valid_document()))
    prepare(resolve("faster_rcnn", "cpu", "1x1", ["data.workers=0"]), data_root=root)
    import mlflow

    mlflow.MlflowClient().search_experiments()


@contextlib.contextmanager
def bounded(seconds: float = 10.0, megabytes: int = 64) -> Iterator[None]:
    """The checks of one input take at most `seconds` and `megabytes` of Python allocations (accepted or not)."""
    tracemalloc.start()
    began = time.perf_counter()
    try:
        yield
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    elapsed = time.perf_counter() - began
    assert elapsed < seconds, f"took {elapsed:.1f} s"
    assert peak < megabytes * 2**20, f"allocated {peak / 2**20:.0f} MiB"


def _bomb(levels: int, fan_out: int) -> str:
    lines = [f"l0: &l0 [{', '.join(['x'] * fan_out)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * fan_out)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


HOSTILE_YAML = st.one_of(
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    st.integers(1, 20_000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 20_000).map(lambda n: "{a: " * n + "1" + "}" * n),
    st.tuples(st.integers(2, 12), st.integers(2, 12)).map(lambda lf: _bomb(*lf)),
    st.integers(0, 400).map(lambda e: f"{10 ** e}"),
    st.sampled_from([".inf", "-.inf", ".nan", "&a [*a]", "*undefined", "!!python/object:os.system {}"]),
)


@JOURNAL_SETTINGS
@given(HOSTILE_YAML, st.sampled_from(["hp.lr", "hp.bs", "hp.seed", "hp.lr_steps", "dist.timeout_s",
                                      "model.detector_kwargs", "accelerator.env", "train.targets"]))
def test_hostile_yaml_in_set_values_and_files_is_refused_fast(warm: None, text: str, key: str) -> None:
    with bounded():
        try:
            resolve("retinanet", "cpu", "1x1", [f"{key}={text}"])
        except BenchError as error:
            assert "\n" not in str(error).strip()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "extra.yaml"
        path.write_bytes(text.encode("latin-1", errors="replace") if text.isascii() is False else text.encode())
        with bounded():
            try:
                resolve("retinanet", "cpu", "1x1", [], [path])
            except BenchError as error:
                assert str(path) in str(error) and "\n" not in str(error).strip()


def _override(key: str, value: object) -> str:
    return f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"


@SETTINGS
@given(st.lists(st.tuples(st.one_of(st.sampled_from(KEYS), st.text(max_size=20)), VALUES), min_size=1, max_size=3),
       st.one_of(st.just("1x1"), st.text(max_size=6)), st.sampled_from(["retinanet", "faster_rcnn", "yolo", ""]))
def test_generated_overrides_and_names_give_clean_errors(overrides: list, topology: str, case: str) -> None:
    settings_ = [_override(key, value) for key, value in overrides]
    try:
        resolve(case, "cpu", topology, settings_)
    except BenchError as error:
        assert "\n" not in str(error).strip()


@SETTINGS
@given(st.one_of(VALUES, st.dictionaries(st.sampled_from(["hp", "model", "data", "train", "accelerator", "dist",
                                                           "eval", "tracking", "bogus"]), VALUES, max_size=3)),
       st.booleans())
def test_generated_config_files_give_clean_errors(document: object, corrupt: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "extra.yaml"
        text = yaml.safe_dump(document)
        path.write_text(text[: len(text) // 2] + ":\n  - ]" if corrupt else text, encoding="utf-8")
        try:
            resolve("retinanet", "cpu", "1x1", [], [path])
        except BenchError as error:
            assert str(path) in str(error)


def _valid_document() -> dict:
    return {"images": [{"id": 1, "file_name": "1.jpg", "width": 64, "height": 48},
                       {"id": 2, "file_name": "2.jpg", "width": 48, "height": 64}],
            "categories": [{"id": 1, "name": "shape"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 30, 20], "area": 600,
                             "iscrowd": 0},
                            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [4, 4, 10, 12], "area": 120,
                             "iscrowd": 0}]}


PATHS = [("images",), ("annotations",), ("categories",), ("images", 0), ("images", 0, "id"),
         ("images", 0, "width"), ("images", 1, "height"), ("images", 0, "file_name"), ("annotations", 0),
         ("annotations", 0, "bbox"), ("annotations", 0, "bbox", 2), ("annotations", 0, "bbox", 3),
         ("annotations", 0, "image_id"), ("annotations", 0, "category_id"), ("annotations", 1, "iscrowd"),
         ("annotations", 1, "area"), ("annotations", 0, "segmentation"), ("categories", 0, "id"), ()]


@st.composite
def malformed_documents(draw: st.DrawFn) -> object:
    document: object = _valid_document()
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        if not path:
            return draw(VALUES)
        parent = document
        try:
            for step in path[:-1]:
                parent = parent[step]
            if draw(st.booleans()) and isinstance(parent, (dict, list)):
                del parent[path[-1]]
            else:
                parent[path[-1]] = draw(st.one_of(VALUES, st.just(-5), st.just(float("nan")), st.just([]),
                                                  st.just([1, 2, -3, 4]), st.just(999)))
        except (KeyError, IndexError, TypeError):
            continue
    return copy.deepcopy(document)


ANNOTATION_TEXTS = st.one_of(
    malformed_documents().map(json.dumps).map(str.encode),
    malformed_documents().map(json.dumps).map(lambda t: t[:-3].encode()),  # cut short
    st.binary(max_size=300),  # not text at all
    st.integers(1, 100_000).map(lambda n: ("[" * n + "]" * n).encode()),  # nested past json's recursion limit
)


@SETTINGS
@given(ANNOTATION_TEXTS, st.booleans(), st.sampled_from([2, 91]))
def test_generated_annotation_files_give_clean_errors(warm: None, content: bytes, with_images: bool,
                                                       num_classes: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for split in ("train2017", "val2017"):
            (root / split).mkdir()
            if with_images:  # the files the valid document names; without them, missing images are the error
                for name in ("1.jpg", "2.jpg"):
                    (root / split / name).write_bytes(b"jpeg")
        (root / "annotations").mkdir()
        (root / "annotations" / "instances_train2017.json").write_bytes(content)
        (root / "annotations" / "instances_val2017.json").write_text(json.dumps(_valid_document()))
        resolved = resolve("faster_rcnn", "cpu", "1x1", ["data.workers=0", f"model.num_classes={num_classes}"])
        with bounded():
            try:
                prepare(resolved, data_root=root)
            except BenchError as error:
                assert "\n" not in str(error).strip()


JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=8))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=8)
OPS = ["start", "online", "synced_into", "offline", "params", "tags", "metrics", "dataset", "artifact", "finish",
       "bogus"]
FIELDS = ["experiment", "tags", "start_time_ms", "run_id", "pid", "host", "reason", "params", "metrics", "step",
          "timestamp_ms", "name", "digest", "source_type", "source", "profile", "file", "artifact_path", "status",
          "end_time_ms"]


def _good_start() -> dict:
    return {"op": "start", "experiment": "fuzz", "tags": {"mlflow.runName": "fuzz"},
            "start_time_ms": 1_700_000_000_000, "run_id": None, "pid": 1, "host": "elsewhere"}


RECORDS = st.one_of(
    st.fixed_dictionaries({"op": st.sampled_from(OPS)},
                          optional={f: JSON_VALUES for f in FIELDS}),
    st.just({"op": "metrics", "metrics": {"p_core": 1.0}, "step": 0, "timestamp_ms": 1_700_000_000_000}),
    st.just({"op": "finish", "status": "FINISHED", "end_time_ms": 1_700_000_000_001}),
    st.just({"op": "artifact", "file": "../../etc/passwd", "artifact_path": None}),
    JSON_VALUES,
)


@JOURNAL_SETTINGS
@given(st.booleans(), st.lists(RECORDS, max_size=6), st.sampled_from(["", "\xff\xfe", "[" * 100_000]))
def test_generated_journals_give_clean_errors(warm: None, good_start: bool, records: list, garbage: str) -> None:
    """`accelbench sync` of a journal someone edited, truncated or corrupted: a DataError naming the line, or an
    upload of what is well-formed; never a KeyError or TypeError half-way through an upload."""
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        lines = [json.dumps(_good_start())] if good_start else []
        lines += [json.dumps(r) for r in records]
        if garbage:
            lines.insert(len(lines) // 2, garbage)
        (directory / "journal.jsonl").write_bytes("\n".join(lines).encode("utf-8", errors="surrogateescape")
                                                   if "\xff" not in garbage else
                                                   "\n".join(lines).encode("latin-1", errors="replace"))
        with bounded(seconds=30):
            try:
                sync(directory)
            except (BenchError, InProgressError) as error:
                assert "\n" not in str(error).strip()


EVENTS = st.lists(st.one_of(
    st.fixed_dictionaries({"event_type": st.sampled_from(["INTERVAL_START", "INTERVAL_END", "POINT_IN_TIME"]),
                           "key": st.sampled_from(["run", "init", "epoch", "train", "eval", "eval_accuracy"]),
                           "time_ms": st.one_of(st.integers(0, 10), JSON_SCALARS)},
                          optional={"metadata": st.one_of(JSON_VALUES, st.dictionaries(
                              st.sampled_from(["images", "steps", "step", "epoch_num", "status", "mode"]),
                              JSON_SCALARS, max_size=3))}),
    JSON_VALUES), max_size=8)


@SETTINGS
@given(EVENTS, st.sampled_from(["", "\xff", "[" * 100_000]))
def test_generated_event_logs_give_a_verdict_or_a_clean_error(warm: None, events: list, garbage: str
                                                              ) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "events.jsonl"
        text = "\n".join(json.dumps(e) for e in events) + ("\n" + garbage if garbage else "")
        path.write_bytes(text.encode("latin-1", errors="replace") if garbage == "\xff" else text.encode())
        with bounded():
            try:
                verdict = check_log(path)
            except BenchError as error:
                assert "\n" not in str(error).strip()
            else:
                assert isinstance(verdict.passed, bool)
