"""Installing the suite beside an existing PyTorch keeps that PyTorch (a vendor's build must never be replaced).

A fresh venv gets a torch that is not the reference pin, then pip resolves `pip install -e REPO` without installing
anything (`--dry-run --report`): the report must list no torch and no torchvision.
- with the real CPU build of torch 2.13.0 on this machine's disk (and the torchvision built for it): about 60 s
  (the venv and the torch install), so marked slow: `bash scripts/test.sh -m slow tests/test_install.py`;
- with the version strings vendors' builds carry (NGC's `2.6.0a0+ecf3bae40a`, MetaX's `2.6.0+metax3.3.0.4`), as
  installed-package metadata only (a stand-in for the vendor's installation, not its code): in the default run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

OTHER_TORCH = ("torch==2.13.0", "torchvision==0.28.0")


def _pip(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_installing_beside_another_torch_installs_no_torch(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    # --no-deps: the point is the torch that is there, not what torchvision 0.28 would pull in
    installed = _pip(venv, "install", "--quiet", "--no-deps", *OTHER_TORCH)
    assert installed.returncode == 0, installed.stderr[-3000:]
    report_file = tmp_path / "report.json"
    planned = _pip(venv, "install", "--dry-run", "--quiet", "--report", str(report_file), "-e", str(REPO))
    assert planned.returncode == 0, planned.stderr[-3000:]
    names = {item["metadata"]["name"].lower() for item in json.loads(report_file.read_text())["install"]}
    assert "accelbench" in names and "mlflow" in names  # it did resolve the suite and its other dependencies
    assert not names & {"torch", "torchvision"}, sorted(names)


def _installed_metadata(venv: Path, name: str, version: str) -> None:
    """What pip sees of an installed distribution: its dist-info folder (the vendor's build itself is not needed)."""
    site = next((venv / "lib").glob("python3*/site-packages"))
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "INSTALLER").write_text("vendor\n")
    (info / "RECORD").write_text("")


@pytest.mark.parametrize(("torch_version", "torchvision_version"), [
    ("2.6.0a0+ecf3bae40a", "0.21.0a0"),  # an NGC container's pre-release builds
    ("2.6.0+metax3.3.0.4", "0.21.0+metax3.3.0.4"),  # a MetaX MACA image
], ids=["ngc", "maca"])
def test_vendor_builds_of_torch_are_kept(tmp_path: Path, torch_version: str, torchvision_version: str) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    _installed_metadata(venv, "torch", torch_version)
    _installed_metadata(venv, "torchvision", torchvision_version)
    report_file = tmp_path / "report.json"
    # this environment's pip, pointed at the venv: the venv itself needs no pip of its own
    planned = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "--python",
                              str(venv / "bin" / "python"), "install", "--dry-run", "--quiet", "--report",
                              str(report_file), "-e", str(REPO)], capture_output=True, text=True, timeout=900)
    assert planned.returncode == 0, planned.stderr[-3000:]
    names = {item["metadata"]["name"].lower() for item in json.loads(report_file.read_text())["install"]}
    assert "accelbench" in names and not names & {"torch", "torchvision"}, sorted(names)
