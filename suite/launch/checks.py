"""Every check a run makes before it exists: config, precision, device stack, data, annotations, weights.

`prepare()` raises BenchError (exit 2) on bad input, so a typo never leaves a half-written run, and returns what
`suite.launch.runner.execute` needs. The cheapest checks come first: the case's checks of its config alone run
before the vendor's adapter (and with it torch) is imported, so a member of a matrix that the case refuses costs
a fraction of a second instead of the seconds a device stack takes to load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from suite import registry
from suite.config import ResolvedConfig
from suite.errors import BenchError, ConfigError, DataError
from suite.launch.scoped_env import scoped_env

if TYPE_CHECKING:
    from suite.launch.runner import Case
    from suite.vendors.base import VendorAdapter

__all__ = ["Prepared", "make_adapter", "prepare", "run_environment"]


@dataclass
class Prepared:
    resolved: ResolvedConfig
    adapter: VendorAdapter
    case: Case
    data_root: Path
    synthetic: bool
    env: dict[str, str] = field(default_factory=dict)  # the run's environment variables (run_environment)


def run_environment(resolved: ResolvedConfig, adapter: VendorAdapter) -> dict[str, str]:
    """The variables a run sets: `accelerator.env` plus what the precision implies on this stack.

    A stack's runtime reads such switches when it initialises, so they are in place before the first device call
    (prepare's availability check) and stay for the run's duration only. `accelerator.env` may not contradict the
    precision: the label must say what math ran.
    """
    config = resolved.config
    precision = config.train.precision
    implied = adapter.precision_env(precision)
    for name in dict.fromkeys([*implied, *adapter.precision_variables]):
        given, value = config.accelerator.env.get(name), implied.get(name)
        if given is not None and given != value:
            key = f"accelerator.env.{name}"
            says = f"which sets {value!r}" if value is not None else "which leaves it unset"
            raise ConfigError(f"{given!r} contradicts train.precision {precision} ({says}); the precision label "
                              f"decides it", source=resolved.provenance.get(key), key=key)
    return {**config.accelerator.env, **implied}


def make_adapter(resolved: ResolvedConfig) -> VendorAdapter:
    return registry.adapter_class(resolved.config.accelerator.adapter, where="accelerator.adapter")()


def prepare(resolved: ResolvedConfig, *, data_root: Path | None = None, synthetic: bool = False,
            adapter: VendorAdapter | None = None) -> Prepared:
    """Every input check, before any run is created. Raises BenchError (exit 2) on bad input.

    `adapter` defaults to the one the config names (tests pass one built on a stand-in device runtime).
    """
    config = resolved.config
    case = registry.case_class(config.case)(config)
    case.check_config()  # before the adapter: loading a device stack takes seconds
    adapter = adapter or make_adapter(resolved)
    adapter.check_precision(config.train.precision)
    env = run_environment(resolved, adapter)
    with scoped_env(env):  # the first device call: the runtime starts with the run's switches in place
        adapter.check_available()
        if config.world_size > 1:
            from suite.launch.launcher import missing_devices

            shortfall = missing_devices(config.nproc_per_node, adapter.device_count())
            if shortfall is not None:
                raise BenchError(f"topology {config.topology} {shortfall} for the {adapter.name} adapter")

    if synthetic:
        root = case.synthetic_root()  # the case owns its synthetic data
    else:
        chosen = data_root or (Path(config.data.root) if config.data.root else None)
        if chosen is None:
            raise DataError("no data: pass --data-root DIR (COCO2017 layout), set data.root, or use --synthetic")
        root = chosen.expanduser()
    case.check(root)
    return Prepared(resolved, adapter, case, root, synthetic, env)
