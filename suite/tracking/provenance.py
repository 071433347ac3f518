"""Provenance: which dataset a run used (a fingerprint of its annotation files plus image counts) and which code
(the suite's git commit and whether the tree was dirty).

The record is logged as an MLflow dataset input (`mlflow.log_input`), so the run page shows the data it trained on,
and its digest as the `bench.data_fingerprint` tag, so runs on the same data can be found by a filter.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 1 << 20


@dataclass(frozen=True)
class DatasetRecord:
    name: str                         # e.g. "coco2017" or "synthetic-shapes"
    root: Path
    files: dict[str, str]             # annotation file (relative to root) -> sha256
    counts: dict[str, int] = field(default_factory=dict)  # e.g. train_images, val_images

    @property
    def digest(self) -> str:
        """One fingerprint for the whole dataset: changes when any annotation file changes."""
        combined = hashlib.sha256()
        for name, sha in sorted(self.files.items()):
            combined.update(f"{name}:{sha}\n".encode())
        return combined.hexdigest()[:16]

    def profile(self) -> dict[str, object]:
        return {"files": self.files, **self.counts}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def git_state(start: Path) -> dict[str, str]:
    """Commit and dirty flag of the suite's checkout, if it is one (an installed wheel has none)."""
    try:
        import git

        repo = git.Repo(start, search_parent_directories=True)
        return {"commit": repo.head.commit.hexsha, "dirty": str(repo.is_dirty()).lower()}
    except Exception:  # noqa: BLE001 - not a repository, no commits yet, or git missing: record nothing
        return {}
