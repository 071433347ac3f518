"""`accelbench doctor`: is this machine ready for this vendor's runs? Seconds of checks before hours of training.

Each check says ok, warn (the run works, with a caveat), fail (the run would not start or not be right) or skip
(it needs something an earlier check found missing), and what to do. Checks, in order: Python and torch builds,
torchvision against torch, the vendor's stack and device count, the precision's math, the distributed backend (a
one-process group), one forward+backward step of the case's model on one device, the memory statistics API, the
telemetry source (one parsed reading), the data root, the backbone weights, the tracking store, the spool folder and
free disk, and whether MFU can be computed. Nothing is recorded in MLflow.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from suite import registry
from suite.config import ResolvedConfig, resolve
from suite.errors import BenchError, one_line
from suite.launch.mlflow_server import free_port
from suite.launch.scoped_env import scoped_env
from suite.precision import profile
from suite.redaction import redact_uri
from suite.tracking.client import client as mlflow_client

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
MIN_FREE_DISK_GIB = 2.0
PROBE_IMAGE_SIDE = 128  # one tiny batch: the step checks the stack, not its speed at real sizes


@dataclass
class Check:
    name: str
    status: str
    detail: str
    hint: str = ""

    def line(self) -> str:
        return f"{self.status.upper():<4}  {self.name:<12} {self.detail}" + (f"  -> {self.hint}" if self.hint else "")


@dataclass
class Report:
    vendor: str
    case: str
    topology: str
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(c.status == FAIL for c in self.checks)

    def text(self) -> str:
        head = f"accelbench doctor: vendor {self.vendor}, case {self.case}, topology {self.topology}"
        verdict = "not ready: fix the failed checks" if self.failed else "ready"
        return "\n".join([head, *(c.line() for c in self.checks), verdict])

    def as_dict(self) -> dict[str, Any]:
        return {"vendor": self.vendor, "case": self.case, "topology": self.topology, "ready": not self.failed,
                "checks": [asdict(c) for c in self.checks]}


class _Doctor:
    def __init__(self, resolved: ResolvedConfig, data_root: Path | None, settings: list[str]) -> None:
        self.resolved = resolved
        self.settings = settings
        self.config = resolved.config
        self.data_root = data_root
        self.report = Report(self.config.vendor, self.config.case, self.config.topology)
        self.adapter: Any = None
        self.device: Any = None
        self.env: dict[str, str] | None = None  # the run's variables, once the precision check computed them

    def probe_config(self) -> ResolvedConfig:
        """This run's config made tiny for one step: a small synthetic set, bs 1, the case's own probe settings."""
        case = registry.case_class(self.config.case)
        return resolve(self.config.case, self.config.vendor, self.config.topology, [
            "data.synthetic.train=2", "data.synthetic.val=1", f"data.synthetic.width={PROBE_IMAGE_SIDE}",
            f"data.synthetic.height={PROBE_IMAGE_SIDE}", *self.settings, "hp.bs=1",
            *case.probe_settings(PROBE_IMAGE_SIDE)])

    def add(self, name: str, status: str, detail: str, hint: str = "") -> Check:
        check = Check(name, status, detail, hint)
        self.report.checks.append(check)
        return check

    def guarded(self, name: str, body: Callable[[], None], hint: str = "") -> bool:
        """Run a check whose failure is an exception; a BenchError's message is the user's to read as it is."""
        try:
            body()
        except BenchError as error:
            self.add(name, FAIL, str(error), hint)
            return False
        except Exception as error:  # noqa: BLE001 - the doctor reports what broke instead of breaking itself
            self.add(name, FAIL, one_line(error), hint)
            return False
        return True

    # --- the checks -------------------------------------------------------------------------------------------
    def software(self) -> None:
        version = platform.python_version()
        self.add("python", OK if sys.version_info >= (3, 10) else FAIL, f"{version} ({sys.executable})",
                 "" if sys.version_info >= (3, 10) else "use Python 3.10 or newer (MLflow 3 needs it)")
        import torch

        build = "CUDA " + torch.version.cuda if torch.version.cuda else "CPU-only"
        if "+" in torch.__version__:
            build += f", local build {torch.__version__.partition('+')[2]}"
        self.add("torch", OK, f"{torch.__version__} ({build})")

        def torchvision_ops() -> None:
            import torchvision
            from torchvision.ops import nms

            nms(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([1.0]), 0.5)
            self.add("torchvision", OK, f"{torchvision.__version__}, its C++ ops load beside this torch")

        self.guarded("torchvision", torchvision_ops,
                     "install the torchvision release built for this torch (pip install --no-deps torchvision==...)")

    def stack(self) -> None:
        config = self.config

        def available() -> None:
            adapter = registry.adapter_class(config.accelerator.adapter, where="accelerator.adapter")()
            adapter.check_available()
            self.adapter = adapter
            expected = self.adapter_expectation()
            self.add("stack", WARN if expected else OK, f"{self.adapter.name} adapter: "
                     f"{self.describe_stack()}", expected)

        if not self.guarded("stack", available, f"see the README's section for {config.vendor}"):
            return
        count = self.adapter.device_count()
        needed = config.nproc_per_node
        if count is None and not self.adapter.counts_devices:
            self.add("devices", OK, f"processes, not devices, are the limit here; topology {config.topology} "
                     f"starts {needed} per node")
        elif count is None:
            self.add("devices", WARN, f"the stack does not report a device count; topology {config.topology} "
                     f"needs {needed} per node", "check the device tool's listing by hand")
        elif count < needed:
            self.add("devices", FAIL, f"{count} visible, topology {config.topology} needs {needed} per node",
                     f"unset or widen {self.adapter.visible_devices_var or 'the visible-devices variable'}")
        else:
            self.add("devices", OK, f"{count} visible; topology {config.topology} uses {needed} per node")

    def adapter_expectation(self) -> str:
        """A caveat when torch is not the build this vendor's adapter expects."""
        import torch

        if self.adapter.name == "metax" and "metax" not in torch.__version__:
            return f"torch {torch.__version__} is not a MACA build (no +metax in its version)"
        return ""

    def describe_stack(self) -> str:
        api = getattr(self.adapter, "api", None)
        return f"usable (API {api})" if isinstance(api, str) else "usable"

    def precision(self) -> None:
        config = self.config
        precision = config.train.precision

        def math() -> None:
            from suite.launch.checks import run_environment

            self.adapter.check_precision(precision)
            env = run_environment(self.resolved, self.adapter)
            implied = self.adapter.precision_env(precision)
            said = f"{precision}: autocast {profile(precision).autocast_label}, tf32 {profile(precision).tf32}"
            if implied:
                said += ", sets " + ", ".join(f"{k}={v}" for k, v in implied.items())
            self.env = env
            self.add("precision", OK, said)

        if self.adapter is None:
            self.add("precision", SKIP, "needs the vendor's stack")
            return
        self.guarded("precision", math, "choose a precision the adapter offers (--precision)")

    def backend(self) -> None:
        if self.adapter is None:
            self.add("backend", SKIP, "needs the vendor's stack")
            return
        backend = self.config.accelerator.dist_backend

        def one_process_group() -> None:
            import torch.distributed as dist

            port = free_port()
            began = time.perf_counter()
            store = dist.TCPStore("127.0.0.1", port, 1, True, timeout=timedelta(seconds=30))
            dist.init_process_group(backend, store=store, rank=0, world_size=1, timeout=timedelta(seconds=30))
            try:
                dist.barrier()
            finally:
                dist.destroy_process_group()
            self.add("backend", OK, f"{backend}: a one-process group initialised "
                     f"({time.perf_counter() - began:.2f} s)")

        self.guarded("backend", one_process_group, f"the {backend} backend is missing from this torch build or "
                     f"cannot start")

    def compute(self) -> None:
        if self.adapter is None or self.env is None:
            self.add("compute", SKIP, "needs the vendor's stack and a usable precision")
            return

        def one_step() -> None:
            from suite.launch.checks import prepare

            prepared = prepare(self.probe_config(), synthetic=True, adapter=self.adapter)
            case = prepared.case
            with scoped_env(prepared.env):
                self.device = self.adapter.device(0)
                self.adapter.set_math_flags(self.config.train.precision)
                model = case.build_model().to(self.device)
                case.calibrate(model, self.device)
                optimizer = case.optimizer(model)
                batch = case.to_device(case.sample_batch(1), self.device)
                self.adapter.synchronize(self.device)
                began = time.perf_counter()
                with self.adapter.autocast(self.device, self.config.train.precision):
                    loss, _ = case.loss(model, batch)
                loss.backward()
                optimizer.step()
                self.adapter.synchronize(self.device)
                seconds = time.perf_counter() - began
            self.add("compute", OK, f"one {self.config.case} training step at {PROBE_IMAGE_SIDE} px on "
                     f"{self.device}: loss {float(loss.detach()):.3f}, {seconds:.2f} s with synchronize")

        self.guarded("compute", one_step)

    def memory(self) -> None:
        if self.device is None:
            self.add("memory", SKIP, "needs a device (compute check)")
            return

        def statistics() -> None:
            memory = self.adapter.memory_gib(self.device)
            shown = ", ".join(f"{k} {v:.2f} GiB" for k, v in memory.items())
            if "mem" not in memory:
                self.add("memory", WARN, f"no allocator peak from this stack ({shown or 'nothing'})",
                         "runs record mem_smi from the device tool instead of mem")
            else:
                self.add("memory", OK, shown)

        self.guarded("memory", statistics)

    def telemetry(self) -> None:
        adapter = self.adapter
        if adapter is None:
            with contextlib.suppress(Exception):  # the stack is missing; the device tool may still be there
                adapter = registry.adapter_class(self.config.accelerator.adapter)()
        if adapter is None:
            self.add("telemetry", SKIP, "needs the vendor's adapter")
            return

        def reading() -> None:
            try:
                probe = adapter.device_probe(0)
            except Exception as error:  # noqa: BLE001 - no driver, no device: the same verdict for every vendor
                reason = str(error) if isinstance(error, BenchError) else one_line(error, 160)
                self.add("telemetry", WARN, f"no device telemetry here ({reason}): runs will have no mem_smi, power "
                         "or utilisation", "install the vendor's driver and tools")
                return
            if probe is None:
                self.add("telemetry", WARN, "no device library or tool answered: runs will have no mem_smi, power "
                         "or utilisation", "put the vendor's smi tool on PATH")
                return
            try:
                facts = probe.facts()
                sample = probe.read()
            finally:
                probe.close()
            values = [f"{name} {value:.1f}{unit}" for name, value, unit in (
                ("memory used", sample.memory_used_gib, " GiB"), ("of", sample.memory_total_gib, " GiB"),
                ("power", sample.power_w, " W"), ("temperature", sample.temperature_c, " C"),
                ("utilisation", sample.utilization_pct, "%")) if value is not None]
            source = " ".join(v for v in (facts.get("telemetry_source"), facts.get("telemetry_tool_version")) if v)
            versions = ", ".join(f"{k} {facts[k]}" for k in ("driver", "maca", "xpu_runtime") if k in facts)
            self.add("telemetry", OK, f"{source or 'device library'}{f' ({versions})' if versions else ''}: "
                     f"{', '.join(values) or 'no figures'}; energy counter "
                     f"{'yes' if sample.energy_j is not None else 'none'}")

        self.guarded("telemetry", reading)

    def data(self) -> None:
        if self.data_root is None:
            self.add("data", WARN, "not checked", "pass --data-root DIR (COCO2017 layout) to check it")
            return

        def dataset() -> None:
            case = registry.case_class(self.config.case)(self.probe_config().config)  # weights: their own check
            case.check(self.data_root)
            record = case.dataset_record(self.data_root)
            counts = ", ".join(f"{k} {v}" for k, v in (record.counts.items() if record else ()))
            self.add("data", OK, f"{self.data_root}: annotations valid ({counts})")

        self.guarded("data", dataset)

    def weights(self) -> None:
        def verify() -> None:
            case = registry.case_class(self.config.case)(self.config)
            path = case.weights_file
            if path is None:
                self.add("weights", WARN, "no weights file configured: the reference graph with random values "
                         "(its speed and memory stand for the published runs', its mAP does not)",
                         "point the case's weights setting (model.backbone_weights) at a local file for the "
                         "reference recipe")
                return
            digest = case.verify_weights()
            self.add("weights", OK, f"{path}: sha256 {digest[:12]}..., loads into the model")

        self.guarded("weights", verify)

    def tracking(self) -> None:
        import mlflow

        uri = mlflow.get_tracking_uri()

        def store() -> None:
            client = mlflow_client(uri)
            if uri.startswith("sqlite:///"):
                folder = Path(uri.removeprefix("sqlite:///")).expanduser().resolve().parent
                if not os.access(folder, os.W_OK):
                    raise BenchError(f"{folder} is not writable, so {redact_uri(uri)} cannot record runs")
            client.search_experiments(max_results=1)
            self.add("tracking", OK, f"{redact_uri(uri)} answers")

        self.guarded("tracking", store, "start the tracking server, or set MLFLOW_TRACKING_URI; runs are spooled "
                     "for `accelbench sync` meanwhile")

    def spool(self) -> None:
        from suite.tracking.spool import spool_root

        root = spool_root().expanduser()

        def writable() -> None:
            root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=root, prefix=".doctor-"):
                pass
            free = shutil.disk_usage(root).free / 1024**3
            status = OK if free >= MIN_FREE_DISK_GIB else WARN
            self.add("spool", status, f"{root} writable, {free:.1f} GiB free",
                     "" if status == OK else "free some disk: the journal and artifacts are kept there")
            with contextlib.suppress(OSError):  # leave no empty spool root behind
                root.rmdir()

        self.guarded("spool", writable, "point ACCELBENCH_SPOOL at a writable folder")

    def mfu(self) -> None:
        peak = self.config.accelerator.peak_tflops.get(profile(self.config.train.precision).peak_key)
        if peak:
            self.add("mfu", OK, f"peak {peak:g} TFLOP/s for {self.config.train.precision}")
        else:
            self.add("mfu", WARN, f"no accelerator.peak_tflops for {self.config.train.precision}: runs record "
                     f"no MFU", "state the dense peak in vendor.yaml if the vendor publishes it")


@contextlib.contextmanager
def _quiet_torch() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def diagnose(case: str, vendor: str, topology: str, settings: list[str] | None = None,
             data_root: Path | None = None) -> Report:
    """Every check for runs of `case` on `vendor` at `topology` with `settings` (`--set` values)."""
    settings = list(settings or [])
    resolved = resolve(case, vendor, topology, settings)
    doctor = _Doctor(resolved, data_root, settings)
    with _quiet_torch(), scoped_env(resolved.config.accelerator.env):
        for check in (doctor.software, doctor.stack, doctor.precision, doctor.backend, doctor.compute,
                      doctor.memory, doctor.telemetry, doctor.data, doctor.weights, doctor.tracking, doctor.spool,
                      doctor.mfu):
            check()
    return doctor.report
