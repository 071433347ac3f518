"""A compact, read-only, memory-mapped index of one COCO annotation file, built once per node and shared.

Parsing COCO train2017's 469 MB of JSON into Python objects costs ~20 s and ~2.4 GB per process, and every
DataLoader worker that reads those objects copies the pages it touches (reference counts are writes: PyTorch issue
#13246). So the file is parsed and validated once, by the first process on the host to take the index's file lock;
it writes flat numpy arrays (per image: id, size, file name, annotation range; per annotation: id, category, box,
area, crowd flag and segmentation; polygon coordinates and RLE counts in flat arrays with offsets) under
`$ACCELBENCH_CACHE/annotation-index/`, named by the file's fingerprint (content SHA-256, size and mtime). Every
other process, rank and worker maps the same files: pages are shared, nothing is copied on read.

A cache that cannot be written (read-only home, full disk) costs speed only: the index is then built in memory,
with one warning.

The index is valid only as a whole. Its arrays are written to a staging folder (named by the builder's pid) and
flushed to disk, then `manifest.json` is written last, recording each array's shape, dtype, size and SHA-256, and
the folder is renamed into place. A reader checks the manifest against every array (a digest check in the process
that opens the index; shapes and dtypes in every worker that maps it again): anything missing, short or different
is rebuilt, with one warning, and no error from a damaged cache reaches the user. Staging folders whose builder is
gone (killed mid-write) are removed by the next builder.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from suite import files, processes
from suite.cache import cache_dir
from suite.errors import DataError
from suite.progress import Progress
from suite.tracking.locks import LockTimeoutError, file_lock
from suite.tracking.provenance import sha256_of

FORMAT = 2  # bump when the arrays' layout changes: old caches are then ignored, never misread
MANIFEST = "manifest.json"
STALE_STAGING_S = 24 * 3600  # a staging folder this old is a dead builder's, whatever its pid says
# How each annotation's segmentation is stored (the `seg_kind` array).
NO_SEGMENTATION, POLYGONS, RLE_COUNTS, RLE_STRING = 0, 1, 2, 3

Check = Callable[[Any, Path, Progress], None]  # validates a parsed document, raising DataError
REQUIRED_KEYS = ("images", "annotations", "categories")  # the lists every COCO annotation file holds

logger = logging.getLogger(__name__)
_warned_unwritable: set[str] = set()
_warned_damaged: set[str] = set()


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a JSON document is parsed and walked.

    Parsing COCO train makes ~30M objects, and each collection the allocations trigger walks all of them: the parse
    takes 11 s with the collector on and 4.6 s with it off (benchmarks/data_index.py's file). The document holds
    no reference cycles, so reference counting frees it all the same.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_annotation_file(annotation_file: Path) -> Any:
    """The file's JSON document, or a DataError naming the file and what is wrong with it."""
    try:
        return json.loads(files.read_text(annotation_file, limit=files.ANNOTATION_FILE_LIMIT))
    except files.UnreadableFileError as e:
        raise DataError(f"{annotation_file}: {e}, so not a COCO annotation file") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{annotation_file}: not valid JSON ({e.msg} at line {e.lineno})") from e
    except RecursionError:
        raise DataError(f"{annotation_file}: nested too deeply to be a COCO annotation file") from None


def _record_count(document: Any) -> int | None:
    """How many records a document holds (for the progress line), None when it is not an object."""
    if not isinstance(document, dict):
        return None
    return sum(len(document[k]) for k in REQUIRED_KEYS if isinstance(document.get(k), list))


@contextlib.contextmanager
def checked_document(annotation_file: Path, check: Check, verb: str) -> Iterator[Any]:
    """The parsed document once `check` accepts it, inside a progress line ("<verb> <file>: N records") that
    also covers what the caller builds from it; the collector stays paused throughout (`gc_paused`)."""
    with gc_paused():
        document = parse_annotation_file(annotation_file)
        with Progress(f"{verb} {annotation_file.name}", _record_count(document), unit="records") as progress:
            check(document, annotation_file, progress)
            yield document


def _ragged(chunks: list[bytes] | list[list[float]] | list[list[int]], dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """(flat values, offsets) of a list of sequences: item i is flat[offsets[i]:offsets[i + 1]]."""
    offsets = np.zeros(len(chunks) + 1, dtype=np.int64)
    np.cumsum([len(c) for c in chunks], out=offsets[1:])
    if dtype is np.uint8:
        flat = np.frombuffer(b"".join(chunks), dtype=np.uint8)  # type: ignore[arg-type]
    else:  # one list, then one conversion: several times faster than numpy pulling from an iterator
        flat = np.array(list(itertools.chain.from_iterable(chunks)), dtype=dtype).reshape(-1)
    return flat, offsets


def build_arrays(document: dict[str, Any]) -> dict[str, np.ndarray]:
    """The index's arrays from a validated document (`check_annotations` has accepted it).

    Images are sorted by id (the order the dataset uses); each image's annotations keep the file's order, the
    order pycocotools' `imgToAnns` gives them.
    """
    images = sorted(document["images"], key=lambda image: image["id"])
    row_of = {image["id"]: row for row, image in enumerate(images)}
    annotations = document["annotations"]
    ann_rows = np.fromiter((row_of[a["image_id"]] for a in annotations), dtype=np.int64, count=len(annotations))
    order = np.argsort(ann_rows, kind="stable")
    names, name_offsets = _ragged([image["file_name"].encode("utf-8") for image in images], np.uint8)
    arrays: dict[str, np.ndarray] = {
        "image_id": np.array([image["id"] for image in images], dtype=np.int64),
        "width": np.array([image["width"] for image in images], dtype=np.float64),
        "height": np.array([image["height"] for image in images], dtype=np.float64),
        "file_names": names,
        "file_name_offsets": name_offsets,
        "ann_offsets": np.concatenate([[0], np.cumsum(np.bincount(ann_rows, minlength=len(images)))]),
    }
    ordered = [annotations[i] for i in order]
    arrays["category_id"] = np.array([a["category_id"] for a in ordered], dtype=np.int64)
    arrays["iscrowd"] = np.array([a.get("iscrowd", 0) for a in ordered], dtype=np.uint8)
    arrays["bbox"] = np.array([a["bbox"] for a in ordered], dtype=np.float64).reshape(-1, 4)
    arrays["area"] = np.array([a.get("area", 0.0) for a in ordered], dtype=np.float64)

    kinds = np.zeros(len(ordered), dtype=np.uint8)
    seg_start = np.zeros(len(ordered), dtype=np.int64)
    seg_end = np.zeros(len(ordered), dtype=np.int64)
    rle_size = np.zeros((len(ordered), 2), dtype=np.int64)
    polygons: list[list[float]] = []
    rle_counts: list[list[int]] = []
    rle_strings: list[bytes] = []
    for i, ann in enumerate(ordered):
        segmentation = ann.get("segmentation")
        if isinstance(segmentation, list):
            kinds[i], seg_start[i] = POLYGONS, len(polygons)
            polygons.extend(segmentation)
            seg_end[i] = len(polygons)
        elif isinstance(segmentation, dict):
            rle_size[i] = segmentation["size"]
            if isinstance(segmentation["counts"], list):
                kinds[i], seg_start[i] = RLE_COUNTS, len(rle_counts)
                rle_counts.append(segmentation["counts"])
                seg_end[i] = len(rle_counts)
            else:
                kinds[i], seg_start[i] = RLE_STRING, len(rle_strings)
                rle_strings.append(segmentation["counts"].encode("utf-8"))
                seg_end[i] = len(rle_strings)
    arrays.update(seg_kind=kinds, seg_start=seg_start, seg_end=seg_end, rle_size=rle_size)
    arrays["polygon_coords"], arrays["polygon_offsets"] = _ragged(polygons, np.float64)
    arrays["rle_counts"], arrays["rle_counts_offsets"] = _ragged(rle_counts, np.int64)
    arrays["rle_chars"], arrays["rle_chars_offsets"] = _ragged(rle_strings, np.uint8)
    return arrays


@dataclass(frozen=True)
class Fingerprint:
    """What names an annotation file's index: its content hash, size and modification time."""

    sha256: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> Fingerprint:
        try:
            stat = path.stat()
            return cls(sha256_of(path), stat.st_size, stat.st_mtime_ns)
        except OSError as e:
            raise DataError(f"{path}: cannot read annotation file: {e.strerror}") from e

    @property
    def folder_name(self) -> str:
        return f"{self.sha256[:32]}-{self.size}-{self.mtime_ns}-v{FORMAT}"


class AnnotationIndex:
    """The arrays of one annotation file, mapped from the cache (or held in memory where it cannot be written).

    Pickles as the folder's path when mapped, so spawned DataLoader workers map the same files instead of
    receiving a copy.
    """

    def __init__(self, source: Path, fingerprint: Fingerprint, arrays: dict[str, np.ndarray],
                 folder: Path | None) -> None:
        self.source = source
        self.fingerprint = fingerprint
        self.arrays = arrays
        self.folder = folder

    @classmethod
    def open(cls, annotation_file: Path, check: Check) -> AnnotationIndex:
        """Map the file's cached index, building it first (under a lock) if no process on this host has yet.

        `check(document, path, progress)` validates the parsed document (raising DataError); it runs only when
        the index is built, since the index's name carries the content hash of the file it was built from.
        """
        fingerprint = Fingerprint.of(annotation_file)
        folder = cache_dir("annotation-index") / fingerprint.folder_name
        arrays = _map(folder, verify=True)
        if arrays is not None:
            logger.debug("%s: mapped the cached annotation index %s", annotation_file, folder)
            return cls(annotation_file, fingerprint, arrays, folder)
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(file_lock(folder.with_name(folder.name + ".lock")))
            except LockTimeoutError:
                raise  # another process is building it, or stopped while building it: the error says which
            except DataError as error:
                return cls(annotation_file, fingerprint, _build(annotation_file, check), _unwritable(folder, error))
            arrays = _map(folder, verify=True)  # another process may have built it while this one waited
            if arrays is None:
                _remove_stale_staging(folder.parent)
                built = _build(annotation_file, check)
                try:
                    _write(folder, built)
                except OSError as error:
                    return cls(annotation_file, fingerprint, built, _unwritable(folder, error))
                arrays = _map(folder)
                if arrays is None:  # written but unreadable (a filesystem losing data): use what was built
                    return cls(annotation_file, fingerprint, built, None)
        return cls(annotation_file, fingerprint, arrays, folder)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.folder is not None:
            state["arrays"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.arrays is None:
            arrays = _map(self.folder)
            if arrays is None:
                raise DataError(f"{self.folder}: the annotation index vanished while the run used it")
            self.arrays = arrays

    def __len__(self) -> int:
        return len(self.arrays["image_id"])

    def file_name(self, row: int) -> str:
        offsets = self.arrays["file_name_offsets"]
        return self.arrays["file_names"][offsets[row]:offsets[row + 1]].tobytes().decode("utf-8")

    def annotations(self, row: int) -> slice:
        offsets = self.arrays["ann_offsets"]
        return slice(int(offsets[row]), int(offsets[row + 1]))

    def image_rows(self) -> np.ndarray:
        """Each annotation's image row (annotations are stored grouped by image)."""
        return np.repeat(np.arange(len(self)), np.diff(self.arrays["ann_offsets"]))

    def segmentation(self, ann: int) -> list[np.ndarray] | dict[str, Any] | None:
        """One annotation's segmentation in the shape pycocotools takes: polygons, an RLE dict, or None."""
        a = self.arrays
        kind, start, end = int(a["seg_kind"][ann]), int(a["seg_start"][ann]), int(a["seg_end"][ann])
        if kind == POLYGONS:
            offsets = a["polygon_offsets"]
            return [a["polygon_coords"][offsets[p]:offsets[p + 1]] for p in range(start, end)]
        size = [int(v) for v in a["rle_size"][ann]]
        if kind == RLE_COUNTS:
            offsets = a["rle_counts_offsets"]
            return {"size": size, "counts": a["rle_counts"][offsets[start]:offsets[start + 1]]}
        if kind == RLE_STRING:
            offsets = a["rle_chars_offsets"]
            return {"size": size, "counts": a["rle_chars"][offsets[start]:offsets[start + 1]].tobytes()}
        return None


def _build(annotation_file: Path, check: Check) -> dict[str, np.ndarray]:
    with checked_document(annotation_file, check, "indexing") as document:
        try:
            return build_arrays(document)
        except (TypeError, ValueError, OverflowError) as error:
            # What the checks leave open: ids beyond 64 bits, RLE counts that are not integers.
            raise DataError(f"{annotation_file}: a value does not fit the annotation index ({error})") from None


class DamagedIndexError(Exception):
    """What is wrong with a cached index folder (it is then rebuilt)."""


def _map(folder: Path | None, *, verify: bool = False) -> dict[str, np.ndarray] | None:
    """The folder's arrays, memory-mapped read-only, once they match its manifest (with `verify`, their digests
    too); None when the folder is missing, or damaged (said once, then rebuilt by the caller)."""
    if folder is None or not folder.is_dir():
        return None
    try:
        return _checked_arrays(folder, verify)
    except Exception as error:  # noqa: BLE001 - whatever a damaged file raises (EOFError, KeyError...): rebuild
        if str(folder) not in _warned_damaged:
            _warned_damaged.add(str(folder))
            logger.warning("cached annotation index %s is damaged (%s); building it again", folder,
                           error if isinstance(error, DamagedIndexError) else f"{type(error).__name__}: {error}")
        return None


def _checked_arrays(folder: Path, verify: bool) -> dict[str, np.ndarray]:
    try:
        manifest = json.loads(files.read_text(folder / MANIFEST, limit=files.MIB))
    except files.UnreadableFileError as error:
        raise DamagedIndexError(f"{MANIFEST}: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(
            manifest.get("arrays"), dict):
        raise DamagedIndexError(f"{MANIFEST} is not a format {FORMAT} manifest")
    recorded: dict[str, Any] = manifest["arrays"]
    present = {path.stem for path in folder.glob("*.npy")}
    if present != set(recorded):
        missing, extra = sorted(set(recorded) - present), sorted(present - set(recorded))
        raise DamagedIndexError(f"arrays missing {missing}" if missing else f"arrays not in the manifest {extra}")
    arrays = {}
    for name, facts in recorded.items():
        path = folder / f"{name}.npy"
        size = path.stat().st_size
        if size != facts["bytes"]:
            raise DamagedIndexError(f"{path.name} has {size} bytes, the manifest says {facts['bytes']}")
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        if list(array.shape) != facts["shape"] or array.dtype.str != facts["dtype"]:
            raise DamagedIndexError(f"{path.name} is {array.dtype.str} {list(array.shape)}, the manifest says "
                                    f"{facts['dtype']} {facts['shape']}")
        if verify and sha256_of(path) != facts["sha256"]:
            raise DamagedIndexError(f"{path.name} is not the content it was written with (SHA-256 differs)")
        arrays[name] = array
    return arrays


def _write(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write to a staging sibling, flush it all, manifest last, then rename: a reader sees a whole index or none."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{folder.name}.{os.getpid()}.", dir=folder.parent))
    try:
        recorded = {}
        for name, array in arrays.items():
            path = staging / f"{name}.npy"
            contiguous = np.ascontiguousarray(array)
            with path.open("wb") as handle:
                np.save(handle, contiguous, allow_pickle=False)
                handle.flush()
                os.fsync(handle.fileno())
            recorded[name] = {"shape": list(contiguous.shape), "dtype": contiguous.dtype.str,
                              "bytes": path.stat().st_size, "sha256": sha256_of(path)}
        with (staging / MANIFEST).open("w", encoding="utf-8") as handle:
            json.dump({"format": FORMAT, "arrays": recorded}, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        if folder.exists():  # a damaged index, or the leftover of a process that died while replacing it
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _remove_stale_staging(parent: Path) -> None:
    """Remove staging folders of builders that are gone (killed mid-write) or that are older than a day."""
    for entry in parent.glob("*-v*.*.*"):
        parts = entry.name.split(".")
        if not entry.is_dir() or len(parts) < 3 or not parts[-2].isdigit():
            continue
        with contextlib.suppress(OSError):
            if not processes.alive(int(parts[-2])) or time.time() - entry.stat().st_mtime > STALE_STAGING_S:
                shutil.rmtree(entry, ignore_errors=True)
                logger.info("removed %s, left by a builder that did not finish", entry)


def _unwritable(folder: Path, error: Exception) -> None:
    """Warn once per cache folder that the index stays in this process's memory."""
    where = str(folder.parent)
    if where not in _warned_unwritable:
        _warned_unwritable.add(where)
        logger.warning("annotation index cache %s is not writable (%s): indexing in memory, once per process",
                       where, getattr(error, "strerror", None) or error)
    return None
