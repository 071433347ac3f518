"""The shape of the code: the folders of suite/ depend one way, the mechanism never imports a workload, and
importing the package, or refusing a config, does no work."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO

# Lowest first: a module may import its own folder and the folders before it, never one after it.
LAYERS = ("top", "vendors", "engine", "tracking", "results", "launch", "cli")
SUITE = REPO / "suite"


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "suite":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "top"


def _imports(path: Path) -> list[str]:
    """The modules `path` imports at run time (imports under `if TYPE_CHECKING:` are for type checkers only)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
            if node.module == "suite":
                found += [f"suite.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return found


def test_the_folders_of_suite_depend_one_way() -> None:
    upward = []
    for path in sorted(SUITE.rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        if module == "suite.__main__":
            continue  # `python -m suite` is the CLI's other name
        mine = LAYERS.index(_layer(module))
        for imported in _imports(path):
            layer = _layer(imported)
            if layer is not None and LAYERS.index(layer) > mine:
                upward.append(f"{module} imports {imported}")
    assert upward == []


def test_no_module_of_suite_imports_a_case() -> None:
    offenders = [f"{path.relative_to(REPO)}: {name}" for path in sorted(SUITE.rglob("*.py"))
                 for name in _imports(path) if name == "cases" or name.startswith("cases.")]
    assert offenders == []


def test_importing_suite_imports_no_torch_and_sets_no_variable() -> None:
    code = ("import os, sys; before = dict(os.environ); import suite, suite.names, suite.config, suite.registry; "
            "assert dict(os.environ) == before, set(os.environ) ^ set(before); "
            "assert 'torch' not in sys.modules and 'mlflow' not in sys.modules, 'imported a framework'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr


def test_a_config_the_case_refuses_is_refused_before_torch_loads() -> None:
    # A matrix member with a backbone its case lacks then costs a fraction of a second, not a device stack's load.
    code = ("import sys; from suite.config import resolve; from suite.errors import ConfigError; "
            "from suite.launch.checks import prepare\n"
            "try: prepare(resolve('retinanet', 'cpu', '1x1', ['model.backbone=mobilenet_v3_large']))\n"
            "except ConfigError as e: print(e)\n"
            "assert 'torch' not in sys.modules, 'imported torch'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "backbone 'mobilenet_v3_large' is not available for retinanet" in result.stdout
