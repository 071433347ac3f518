"""Local backbone weight files: existence and the torchvision-style hash prefix in the file name.

`resnet50-0676ba61.pth` must have a SHA-256 digest starting with `0676ba61`; a file without a hash in its name is
accepted and its full digest recorded. Nothing is ever downloaded.
"""

from __future__ import annotations

import re
from pathlib import Path

from suite.errors import WeightsError
from suite.tracking.provenance import sha256_of

__all__ = ["HASH_IN_NAME", "sha256_of", "verify_weights_file"]

HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.")


def verify_weights_file(path: Path) -> str:
    """Return the file's SHA-256, or raise WeightsError if it is missing or contradicts its name's hash prefix."""
    if not path.is_file():
        raise WeightsError(f"model.backbone_weights: file {path} does not exist (weights are never downloaded; "
                           f"point to a local copy, or set it to null for random init)")
    digest = sha256_of(path)
    match = HASH_IN_NAME.search(path.name)
    if match and not digest.startswith(match.group(1)):
        raise WeightsError(f"model.backbone_weights: {path} has SHA-256 {digest[:len(match.group(1))]}..., "
                           f"but its name says {match.group(1)}; the file is corrupt or not the one named")
    return digest
