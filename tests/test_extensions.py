"""A new accelerator and a new case from another package, found through entry points without editing the suite.

The example package in examples/accelbench-toy (the one CONTRIBUTING.md walks through) is built and installed into
a folder here with pip, as a user would install their own; the suite's processes see it on PYTHONPATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from suite import names
from tests.helpers import LIGHT_RUN, REPO, TINY, invoke, run_cli

EXAMPLE = REPO / "examples" / "accelbench-toy"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example package, built from a copy of its source (the build leaves files behind) and installed."""
    work = tmp_path_factory.mktemp("extension")
    source = work / "accelbench-toy"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "site"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                             "--no-index", "--no-deps", "--no-build-isolation", "--target", str(target),
                             str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (target / "accelbench_toy-0.1.0.dist-info" / "entry_points.txt").is_file()
    return target


def _with(site: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(site)}


def test_list_shows_the_new_adapter_case_and_vendor(site: Path) -> None:
    result = run_cli("list", env=_with(site))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "tiny_frcnn" in lines[0].split(": ")[1].split(", ")
    assert "toy" in lines[1].split(": ")[1].split(", ")
    text = result.stdout
    assert "toy_npu          Toy NPU (adapter toy)" in text
    toy_block = text[text.index("toy_npu"):]
    assert "faster_rcnn  1x1" in toy_block and "tiny_frcnn   1x1" in toy_block
    cpu_block = text[text.index("  cpu "):text.index("kunlunxin_r300")]
    assert "tiny_frcnn   1x1" in cpu_block  # the package's topology file for a built-in vendor

    plain = run_cli("list")  # without the package nothing of it is known
    assert "tiny_frcnn" not in plain.stdout and "toy_npu" not in plain.stdout


def test_configs_resolve_from_the_package_with_their_sources(site: Path) -> None:
    result = run_cli("show-config", "--case", "faster_rcnn", "--vendor", "toy_npu", env=_with(site))
    assert result.returncode == 0, result.stderr
    adapter_line = next(line for line in result.stdout.splitlines() if line.startswith("accelerator.adapter:"))
    assert adapter_line.split()[1] == "toy"
    assert adapter_line.endswith(str(site / "accelbench_toy" / "vendor_configs" / "toy_npu" / "vendor.yaml"))
    backbone_line = next(line for line in result.stdout.splitlines() if line.startswith("model.backbone:"))
    assert backbone_line.split()[1] == "resnet50" and backbone_line.endswith("# cases/faster_rcnn/defaults.yaml")

    result = run_cli("show-config", "--case", "tiny_frcnn", "--vendor", "cpu", env=_with(site))
    assert result.returncode == 0, result.stderr
    assert "model.backbone: tiny_convnet" in result.stdout
    assert str(site / "accelbench_toy" / "tiny_frcnn" / "defaults.yaml") in result.stdout
    assert "# vendor_configs/cpu/vendor.yaml" in result.stdout

    # The new adapter declares the precisions it really has; anything else is bad input, before any run.
    result = run_cli("run", "--case", "tiny_frcnn", "--vendor", "toy_npu", "--synthetic", "--precision",
                     "amp_bf16", env=_with(site))
    assert result.returncode == 2 and "amp_bf16" in result.stderr and "toy" in result.stderr, result.stderr


def test_new_case_runs_on_the_new_accelerator(site: Path, tracking_uri: str) -> None:
    result = run_cli("run", "--case", "tiny_frcnn", "--vendor", "toy_npu", "--synthetic", *TINY, env=_with(site))
    assert result.returncode == 0, result.stderr
    (run,) = mlflow.MlflowClient(tracking_uri).search_runs(
        [mlflow.MlflowClient(tracking_uri).get_experiment_by_name("accelbench").experiment_id])
    tags, metrics = run.data.tags, run.data.metrics
    assert run.info.status == "FINISHED"
    assert (tags[names.TAG_CASE], tags[names.TAG_VENDOR], tags[names.TAG_ACCELERATOR]) == ("tiny_frcnn", "toy_npu",
                                                                                          "Toy NPU")
    assert tags[names.ENV_TAG_PREFIX + "accelerator_model"] == "Toy NPU (simulated on the host CPU)"
    assert tags[names.ENV_TAG_PREFIX + "toy_driver"] == "0.1"
    assert tags[names.MATH_TAG_PREFIX + "toy_kernels"] == "reference"
    assert metrics[names.P_CORE] > 0 and names.MAP in metrics and metrics[names.STEPS] == 2
    assert "case **tiny_frcnn** · accelerator **Toy NPU (toy_npu)**" in tags[names.TAG_DESCRIPTION]


def test_plain_config_folder_from_the_environment(tmp_path: Path) -> None:
    """ACCELBENCH_VENDOR_CONFIGS: vendor folders kept outside any package (here a CPU box under another name)."""
    folder = tmp_path / "configs" / "lab_cpu"
    (folder / "retinanet").mkdir(parents=True)
    (folder / "vendor.yaml").write_text("accelerator: {adapter: cpu, name: Lab CPU, dist_backend: gloo}\n")
    (folder / "retinanet" / "1x1.yaml").write_text("hp: {bs: 1}\ntrain: {mode: smoke, max_steps: 1}\n")
    os.environ["ACCELBENCH_VENDOR_CONFIGS"] = str(tmp_path / "configs")  # undone after the test (isolated_env)
    result = invoke("show-config", "--case", "retinanet", "--vendor", "lab_cpu")
    assert result.exit_code == 0, result.stderr
    bs_line = next(line for line in result.stdout.splitlines() if line.startswith("hp.bs:"))
    assert bs_line.split()[1] == "1" and bs_line.endswith(f"# {folder / 'retinanet' / '1x1.yaml'}")
    os.environ["ACCELBENCH_VENDOR_CONFIGS"] = str(tmp_path / "nowhere")
    missing = invoke("list")
    assert missing.exit_code == 2
    assert missing.stderr.strip() == f"accelbench: error: ACCELBENCH_VENDOR_CONFIGS: {tmp_path / 'nowhere'} is not " \
                                     f"a folder"


BROKEN_PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "accelbench-broken"
version = "0.1.0"

[project.entry-points."accelbench.vendor_configs"]
broken_missing = "accelbench_broken.no_such_configs"
broken_boom = "accelbench_broken_boom.vendor_configs"
broken_good = "accelbench_broken.vendor_configs"

[project.entry-points."accelbench.cases"]
broken_case = "accelbench_broken.case:BrokenCase"

[project.entry-points."accelbench.adapters"]
broken_adapter = "accelbench_broken_boom.adapter:Adapter"

[tool.setuptools.packages.find]
include = ["accelbench_broken*"]

[tool.setuptools.package-data]
"accelbench_broken.case" = ["defaults.yaml"]
"accelbench_broken.vendor_configs" = ["*/*/*.yaml"]
"""


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A twin of the example package whose plugins fail to load in every way a real one can: a configs package
    that is not there, a package that raises on import, and a case whose module imports what is not installed.
    Its one good part (a topology file for the broken case on the cpu vendor) still loads."""
    work = tmp_path_factory.mktemp("broken-extension")
    source = work / "accelbench-broken"
    (source / "accelbench_broken" / "case").mkdir(parents=True)
    (source / "accelbench_broken" / "vendor_configs" / "cpu" / "broken_case").mkdir(parents=True)
    (source / "accelbench_broken_boom").mkdir()
    (source / "pyproject.toml").write_text(BROKEN_PYPROJECT)
    (source / "accelbench_broken" / "__init__.py").write_text("")
    (source / "accelbench_broken" / "vendor_configs" / "__init__.py").write_text("")
    (source / "accelbench_broken" / "vendor_configs" / "cpu" / "broken_case" / "1x1.yaml").write_text(
        "hp: {bs: 1}\n")
    (source / "accelbench_broken" / "case" / "__init__.py").write_text("import accelbench_not_installed\n")
    (source / "accelbench_broken" / "case" / "defaults.yaml").write_text("hp: {bs: 1, lr: 0.01}\n")
    (source / "accelbench_broken_boom" / "__init__.py").write_text("raise RuntimeError('boom at import')\n")
    target = work / "site"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                             "--no-index", "--no-deps", "--no-build-isolation", "--target", str(target),
                             str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return target


def test_a_broken_plugin_breaks_only_itself(broken_site: Path, tracking_uri: str) -> None:
    env = _with(broken_site)
    listed = run_cli("list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "faster_rcnn" in listed.stdout and "  cpu " in listed.stdout
    assert "broken_adapter" not in listed.stdout  # its package fails to import
    warnings = [line for line in listed.stderr.splitlines() if "fails to load" in line]
    assert len(warnings) == 3, listed.stderr  # once per broken entry point, however often it is read
    assert any("'broken_missing'" in w and "accelbench_broken.no_such_configs" in w for w in warnings)
    assert any("'broken_boom'" in w and "RuntimeError: boom at import" in w for w in warnings)
    assert any("'broken_adapter'" in w and "RuntimeError: boom at import" in w for w in warnings)
    assert all("WARNING" in w and "accelbench-broken" in w for w in warnings)

    good = run_cli(*LIGHT_RUN, env=env)
    assert good.returncode == 0, good.stderr[-3000:]

    case = run_cli("run", "--case", "broken_case", "--vendor", "cpu", "--synthetic", *TINY, env=env)
    assert case.returncode == 2, case.stderr[-3000:]
    error = case.stderr.strip().splitlines()[-1]
    assert error.startswith("accelbench: error: entry point 'broken_case'") and "accelbench_not_installed" in error
    adapter = run_cli("run", "--case", "retinanet", "--vendor", "cpu", "--synthetic", *TINY,
                      "--set", "accelerator.adapter=broken_adapter", env=env)
    assert adapter.returncode == 2
    assert "entry point 'broken_adapter'" in adapter.stderr.strip().splitlines()[-1]
    vendor = run_cli("show-config", "--case", "retinanet", "--vendor", "boom_npu", env=env)
    assert vendor.returncode == 2 and "unknown vendor 'boom_npu'" in vendor.stderr
    assert "a plugin that failed to load" in vendor.stderr.strip().splitlines()[-1]
    runs = mlflow.MlflowClient(tracking_uri).search_runs(
        [mlflow.MlflowClient(tracking_uri).get_experiment_by_name("accelbench").experiment_id])
    assert len(runs) == 1  # only the good run: the refused ones left nothing behind
