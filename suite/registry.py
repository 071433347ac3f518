"""Registries of cases, vendor adapters and vendor config folders, as import strings (no torch import here).

Built-ins are listed below; out-of-tree packages add theirs through the entry-point groups `accelbench.cases` and
`accelbench.adapters` (value: "package.module:ClassName"), the way mlflow loads its plugins.
"""

from __future__ import annotations

import importlib
import importlib.util
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
    return _package_dir("vendor_configs")


def vendors() -> list[str]:
    root = vendor_configs_root()
    return sorted(p.name for p in root.iterdir() if (p / VENDOR_FILE).is_file())


def vendor_dir(name: str) -> Path:
    if name not in vendors():
        raise UnknownNameError("vendor", name, vendors())
    return vendor_configs_root() / name


def topologies(vendor: str, case: str) -> list[str]:
    case_dir = vendor_dir(vendor) / case
    if not case_dir.is_dir():
        return []
    return sorted(p.stem for p in case_dir.glob("*.yaml"))
