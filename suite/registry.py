"""Registries of cases, vendor adapters and vendor config folders, as import strings (no torch import here).

Built-ins are listed below. Out-of-tree packages add theirs through entry points, the way mlflow loads its plugins
(CONTRIBUTING.md has a worked example):

    accelbench.cases           name = "package.module:CaseClass"   (the module's package folder holds defaults.yaml)
    accelbench.adapters        name = "package.module:AdapterClass"
    accelbench.vendor_configs  name = "package.with.configs"        (a package whose folder holds <vendor>/ folders)

`ACCELBENCH_VENDOR_CONFIGS` adds plain folders of the same layout (os.pathsep-separated), for configs kept outside
any package. A vendor is found in the first root whose `<vendor>/vendor.yaml` exists (built-ins first); a
topology file may live in any root, so a package can add a new case's configs for a built-in vendor.

A plugin that fails to load breaks only itself, as in mlflow's plugin loaders: the suite warns once, naming the
entry point and the error, and goes on without it; a command that names the broken plugin's case or adapter gets a
one-line PluginError (exit 2).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import os
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from suite.errors import ConfigError, PluginError, UnknownNameError, one_line
from suite.topology import is_topology

logger = logging.getLogger(__name__)

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
VENDOR_CASE_FILE = "case.yaml"  # <vendor>/<case>/case.yaml: a vendor's settings for one case, every topology


_warned: set[tuple[str, str]] = set()  # (group, name) of the broken entry points already warned about


def _describe(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    source = f" of distribution {dist.name}" if dist is not None and getattr(dist, "name", None) else ""
    return f"entry point {ep.name!r} = {ep.value!r} in group {ep.group}{source}"


def _broken(ep: EntryPoint, error: BaseException) -> PluginError:
    """Warn once per process about a plugin that fails to load, and return the error for whoever names it."""
    message = f"{_describe(ep)} fails to load ({one_line(error)})"
    if (ep.group, ep.name) not in _warned:
        _warned.add((ep.group, ep.name))
        logger.warning("%s; skipping it", message)
    return PluginError(message)


def _group(group: str) -> tuple[EntryPoint, ...]:
    """The entry points of a group. Reading them opens every installed distribution's metadata (about 25 ms
    with this project's dependencies) and one config resolution asks eight times, so they are read once per
    import path: what a process can import does not change unless its sys.path does."""
    return _scanned(group, tuple(sys.path))


@functools.cache
def _scanned(group: str, _import_path: tuple[str, ...]) -> tuple[EntryPoint, ...]:
    return tuple(entry_points(group=group))


def _entry_point(group: str, name: str) -> EntryPoint | None:
    return next((ep for ep in _group(group) if ep.name == name), None)


def _with_entry_points(builtins: dict[str, str], group: str) -> dict[str, str]:
    table = dict(builtins)
    for ep in _group(group):
        table.setdefault(ep.name, ep.value)
    return table


def cases() -> dict[str, str]:
    return _with_entry_points(BUILTIN_CASES, CASE_GROUP)


def adapters() -> dict[str, str]:
    return _with_entry_points(BUILTIN_ADAPTERS, ADAPTER_GROUP)


def _locatable(group: str, name: str, import_string: str, builtins: dict[str, str]) -> bool:
    """Whether a plugin's module can be found (its parent packages import) without importing it, which for a
    case would import torch; a plugin that cannot is warned about once."""
    if name in builtins:
        return True
    ep = _entry_point(group, name)
    try:
        found = importlib.util.find_spec(import_string.partition(":")[0]) is not None
    except Exception as error:  # a parent package that fails to import
        if ep is not None:
            _broken(ep, error)
        return False
    if not found and ep is not None:
        _broken(ep, ModuleNotFoundError(f"no module {import_string.partition(':')[0]!r}"))
    return found


def listed_cases() -> list[str]:
    """Case names for `accelbench list`: built-ins and the plugins whose module can be found."""
    return sorted(n for n, target in cases().items() if _locatable(CASE_GROUP, n, target, BUILTIN_CASES))


def listed_adapters() -> list[str]:
    return sorted(n for n, target in adapters().items() if _locatable(ADAPTER_GROUP, n, target, BUILTIN_ADAPTERS))


def load_object(import_string: str) -> Any:
    module_name, _, attr = import_string.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def _load(group: str, name: str, import_string: str, builtins: dict[str, str]) -> Any:
    """A registered object; a plugin's that fails to import is a PluginError naming its entry point."""
    ep = None if name in builtins else _entry_point(group, name)
    if ep is None:
        return load_object(import_string)  # a built-in: a failure here is the suite's own bug, with its traceback
    try:
        return load_object(import_string)
    except Exception as error:  # any failure of a plugin's import is that plugin's, reported in one line
        raise _broken(ep, error) from error


def case_class(name: str) -> Any:
    table = cases()
    if name not in table:
        raise UnknownNameError("case", name, table)
    return _load(CASE_GROUP, name, table[name], BUILTIN_CASES)


def adapter_class(name: str, *, where: str | None = None) -> Any:
    table = adapters()
    if name not in table:
        raise UnknownNameError("adapter", name, table, where=where)
    return _load(ADAPTER_GROUP, name, table[name], BUILTIN_ADAPTERS)


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
    if name in BUILTIN_CASES:
        return _package_dir(module_name) / DEFAULTS_FILE
    try:
        return _package_dir(module_name) / DEFAULTS_FILE
    except Exception as error:  # the plugin's package is missing or fails to import
        ep = _entry_point(CASE_GROUP, name)
        if ep is None:
            raise
        raise _broken(ep, error) from error


def vendor_configs_root() -> Path:
    """The built-in vendor_configs/ folder."""
    return _package_dir(BUILTIN_VENDOR_CONFIGS)


def vendor_config_roots() -> list[Path]:
    """Every folder of <vendor>/ folders: built-in, then entry points (by name), then ACCELBENCH_VENDOR_CONFIGS."""
    roots = [vendor_configs_root()]
    for ep in sorted(_group(VENDOR_CONFIGS_GROUP), key=lambda ep: ep.name):
        try:
            roots.append(_package_dir(ep.value))
        except Exception as error:  # a broken plugin hides its own vendors, not everyone's
            _broken(ep, error)
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
    """The folder holding the vendor's vendor.yaml (and published.yaml, if any).

    A vendor is a name, never a path: only a folder name listed by `vendors()` is joined to a root, so
    `--vendor ./cpu` or `--vendor /some/dir` is an unknown vendor, not a way to read configs from elsewhere.
    """
    known = vendors()
    if name in known:
        for root in vendor_config_roots():
            if (root / name / VENDOR_FILE).is_file():
                return root / name
    broken = [_describe(ep) for ep in _group(VENDOR_CONFIGS_GROUP) if (ep.group, ep.name) in _warned]
    note = f"it may come from a plugin that failed to load: {'; '.join(broken)}" if broken else None
    raise UnknownNameError("vendor", name, known, note=note)


def topology_file(vendor: str, case: str, topology: str) -> Path | None:
    vendor_dir(vendor)  # an unknown vendor is named as such, not as a missing topology
    _check_case_name(case)
    if not is_topology(topology):
        return None
    for root in vendor_config_roots():
        path = root / vendor / case / f"{topology}.yaml"
        if path.is_file():
            return path
    return None


def vendor_case_file(vendor: str, case: str) -> Path | None:
    """`<vendor>/<case>/case.yaml`, the layer between vendor.yaml and the topology files, where it exists."""
    vendor_dir(vendor)
    _check_case_name(case)
    for root in vendor_config_roots():
        path = root / vendor / case / VENDOR_CASE_FILE
        if path.is_file():
            return path
    return None


def _check_case_name(case: str) -> None:
    table = cases()
    if case not in table:
        raise UnknownNameError("case", case, table)


def topologies(vendor: str, case: str) -> list[str]:
    vendor_dir(vendor)
    _check_case_name(case)
    return sorted({p.stem for root in vendor_config_roots() for p in (root / vendor / case).glob("*.yaml")
                   if is_topology(p.stem)})


def config_source(path: Path) -> str:
    """How provenance names a config file: `cases/...` or `vendor_configs/...` for built-ins, else the full path."""
    for package in (BUILTIN_CASES_PACKAGE, BUILTIN_VENDOR_CONFIGS):
        try:
            return f"{package}/{path.relative_to(_package_dir(package)).as_posix()}"
        except ValueError:
            continue
    return str(path)
