"""Registries of cases, vendor adapters and vendor config folders, as import strings (no torch import here).

Built-ins are listed below. Out-of-tree packages add theirs through entry points, the way mlflow loads its plugins
(CONTRIBUTING.md has a worked example):

    accelbench.cases           name = "package.module:CaseClass"   (the module's package folder holds defaults.yaml)
    accelbench.adapters        name = "package.module:AdapterClass"
    accelbench.vendor_configs  name = "package.with.configs"        (a package whose folder holds <vendor>/ folders)

`ACCELBENCH_VENDOR_CONFIGS` adds plain folders of the same layout (os.pathsep-separated), for configs kept outside
any package. A vendor is found in the first root whose `<vendor>/vendor.yaml` exists (built-ins first); a
topology file may live in any root, so a package can add a new case's configs for a built-in vendor.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from suite.errors import ConfigError, UnknownNameError

BUILTIN_CASES: dict[str, str] = {
    "faster_rcnn": "cases.faster_rcnn:FasterRCNNCase",
    "retinanet": "cases.retinanet:RetinaNetCase",
    "mask_rcnn": "cases.mask_rcnn:MaskRCNNCase",
}
BUILTIN_ADAPTERS: dict[str, str] = {
    "cuda": "suite.vendors.cuda:CudaAdapter",
    "metax": "suite.vendors.metax:MetaxAdapter",
    "kunlunxin": "suite.vendors.kunlunxin:KunlunxinAdapter",
    "cpu": "suite.vendors.cpu:CpuAdapter",
}
CASE_GROUP = "accelbench.cases"
ADAPTER_GROUP = "accelbench.adapters"
VENDOR_CONFIGS_GROUP = "accelbench.vendor_configs"
VENDOR_CONFIGS_ENV = "ACCELBENCH_VENDOR_CONFIGS"
BUILTIN_VENDOR_CONFIGS = "vendor_configs"
BUILTIN_CASES_PACKAGE = "cases"
DEFAULTS_FILE = "defaults.yaml"
VENDOR_FILE = "vendor.yaml"


def _with_entry_points(builtins: dict[str, str], group: str) -> dict[str, str]:
    table = dict(builtins)
    for ep in entry_points(group=group):
        table.setdefault(ep.name, ep.value)
    return table


def cases() -> dict[str, str]:
    return _with_entry_points(BUILTIN_CASES, CASE_GROUP)


def adapters() -> dict[str, str]:
    return _with_entry_points(BUILTIN_ADAPTERS, ADAPTER_GROUP)


def load_object(import_string: str) -> Any:
    module_name, _, attr = import_string.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def case_class(name: str) -> Any:
    table = cases()
    if name not in table:
        raise UnknownNameError("case", name, table)
    return load_object(table[name])


def adapter_class(name: str, *, where: str | None = None) -> Any:
    table = adapters()
    if name not in table:
        raise UnknownNameError("adapter", name, table, where=where)
    return load_object(table[name])


def _package_dir(module_name: str) -> Path:
    # find_spec imports only the parent packages, which are torch-free, not the case module itself.
    spec = importlib.util.find_spec(module_name)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"cannot locate package {module_name!r}")
    return Path(next(iter(spec.submodule_search_locations)))


def case_defaults_file(name: str) -> Path:
    table = cases()
    if name not in table:
        raise UnknownNameError("case", name, table)
    module_name = table[name].partition(":")[0]
    return _package_dir(module_name) / DEFAULTS_FILE


def vendor_configs_root() -> Path:
    """The built-in vendor_configs/ folder."""
    return _package_dir(BUILTIN_VENDOR_CONFIGS)


def vendor_config_roots() -> list[Path]:
    """Every folder of <vendor>/ folders: built-in, then entry points (by name), then ACCELBENCH_VENDOR_CONFIGS."""
    roots = [vendor_configs_root()]
    for ep in sorted(entry_points(group=VENDOR_CONFIGS_GROUP), key=lambda ep: ep.name):
        try:
            roots.append(_package_dir(ep.value))
        except (ConfigError, ImportError) as error:
            raise ConfigError(f"entry point {ep.name!r} in group {VENDOR_CONFIGS_GROUP}: {error}") from None
    for folder in os.environ.get(VENDOR_CONFIGS_ENV, "").split(os.pathsep):
        if folder.strip():
            path = Path(folder).expanduser()
            if not path.is_dir():
                raise ConfigError(f"{VENDOR_CONFIGS_ENV}: {path} is not a folder")
            roots.append(path)
    return list(dict.fromkeys(roots))


def vendors() -> list[str]:
    return sorted({p.name for root in vendor_config_roots() for p in root.iterdir() if (p / VENDOR_FILE).is_file()})


def vendor_dir(name: str) -> Path:
    """The folder holding the vendor's vendor.yaml (and published.yaml, if any)."""
    for root in vendor_config_roots():
        if (root / name / VENDOR_FILE).is_file():
            return root / name
    raise UnknownNameError("vendor", name, vendors())


def topology_file(vendor: str, case: str, topology: str) -> Path | None:
    vendor_dir(vendor)  # an unknown vendor is named as such, not as a missing topology
    for root in vendor_config_roots():
        path = root / vendor / case / f"{topology}.yaml"
        if path.is_file():
            return path
    return None


def topologies(vendor: str, case: str) -> list[str]:
    vendor_dir(vendor)
    return sorted({p.stem for root in vendor_config_roots() for p in (root / vendor / case).glob("*.yaml")})


def config_source(path: Path) -> str:
    """How provenance names a config file: `cases/...` or `vendor_configs/...` for built-ins, else the full path."""
    for package in (BUILTIN_CASES_PACKAGE, BUILTIN_VENDOR_CONFIGS):
        try:
            return f"{package}/{path.relative_to(_package_dir(package)).as_posix()}"
        except ValueError:
            continue
    return str(path)
