"""Vendor adapters against small fake device modules, so the metax and kunlunxin code paths run without hardware."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from suite.errors import ConfigError, RunError, VendorUnavailableError
from suite.vendors.base import GIB
from suite.vendors.cpu import CpuAdapter
from suite.vendors.cuda import CudaAdapter
from suite.vendors.kunlunxin import KunlunxinAdapter
from suite.vendors.metax import TF32_ENV, MetaxAdapter
from tests.conftest import TINY, search_runs


class FakeCudaModule:
    """The subset of torch.cuda the adapters call, recording calls."""

    def __init__(self, count: int = 2) -> None:
        self.count = count
        self.calls: list[str] = []

    def is_available(self) -> bool:
        return self.count > 0

    def device_count(self) -> int:
        return self.count

    def set_device(self, index: int) -> None:
        self.calls.append(f"set_device:{index}")

    def synchronize(self, device: object) -> None:
        self.calls.append("synchronize")

    def manual_seed_all(self, seed: int) -> None:
        self.calls.append(f"seed:{seed}")

    def reset_peak_memory_stats(self, device: object) -> None:
        self.calls.append("reset_peak")

    def max_memory_allocated(self, device: object) -> int:
        return 3 * GIB

    def max_memory_reserved(self, device: object) -> int:
        return 4 * GIB

    def get_device_properties(self, device: object) -> SimpleNamespace:
        return SimpleNamespace(name="MetaX C500", total_memory=64 * GIB)


@pytest.fixture
def restore_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = saved


def test_metax_adapter_with_fake_device(monkeypatch: pytest.MonkeyPatch, restore_tf32: None) -> None:
    monkeypatch.delenv(TF32_ENV, raising=False)
    fake = FakeCudaModule()
    adapter = MetaxAdapter(device_module=fake)
    adapter.check_available()
    device = adapter.device(1)
    assert device == torch.device("cuda", 1)
    adapter.manual_seed(7)
    adapter.synchronize(device)
    assert fake.calls == ["set_device:1", "seed:7", "synchronize"]

    assert adapter.precision_env("tf32") == {TF32_ENV: "1"} and adapter.precision_env("amp_bf16") == {TF32_ENV: "0"}
    monkeypatch.setenv(TF32_ENV, "1")
    flags = adapter.set_math_flags("tf32")
    assert flags[TF32_ENV] == "1" and flags["matmul_tf32"] == "true" and flags["cudnn_tf32"] == "true"
    with pytest.raises(RunError, match="METAX_USE_TF32 is '1' in this process, but precision fp32 needs '0'"):
        adapter.set_math_flags("fp32")  # the runtime already started with TF32 on: refuse to label it fp32

    assert adapter.memory_gib(device) == {"mem": 3.0, "mem_reserved": 4.0, "mem_total": 64.0}
    assert adapter.inventory() == {"accelerator_model": "MetaX C500", "accelerator_count": "2",
                                   "accelerator_memory_gib": "64.0"}
    assert adapter.visible_devices_var == "CUDA_VISIBLE_DEVICES"


class MacaRuntimeStandIn(FakeCudaModule):
    """torch.cuda as a MACA build exposes it, for one device. Like the real runtime, it takes METAX_USE_TF32 from
    the environment when it initialises (its first call); every call notes the value it saw."""

    def __init__(self) -> None:
        super().__init__(count=1)
        self.seen: list[tuple[str, str | None]] = []

    def __getattribute__(self, name: str) -> object:
        attribute = super().__getattribute__(name)
        if callable(attribute) and not name.startswith("_"):
            super().__getattribute__("seen").append((name, os.environ.get(TF32_ENV)))
        return attribute

    @property
    def tf32_at_init(self) -> str | None:
        return self.seen[0][1]


class MetaxAdapterOnStandIn(MetaxAdapter):
    """The real MetaX adapter on the stand-in runtime; only tensors stay on the CPU, which is all this machine has."""

    @property
    def device_type(self) -> str:
        return "cpu"

    @property
    def pin_memory(self) -> bool:
        return False


@pytest.mark.parametrize(("precision", "switch"), [("fp32", "0"), ("tf32", "1")])
def test_metax_precision_switch_is_in_place_before_the_runtime_starts(
        monkeypatch: pytest.MonkeyPatch, restore_tf32: None, tracking_uri: str, precision: str, switch: str) -> None:
    import time

    from suite import runner
    from suite.config import resolve

    users_own = "1" if switch == "0" else "0"  # the user's shell says the opposite; the run must not inherit it
    monkeypatch.setenv(TF32_ENV, users_own)
    runtime = MacaRuntimeStandIn()
    resolved = resolve("retinanet", "metax_c500", "1x1", [
        "train.mode=smoke", f"train.precision={precision}", "train.max_steps=1", "data.workers=0", "hp.bs=2",
        "data.synthetic.train=4", "data.synthetic.val=2", "model.min_size=64", "model.max_size=64"])
    outcome = runner.run(resolved, synthetic=True, started_at=time.time(),
                         adapter=MetaxAdapterOnStandIn(device_module=runtime))
    assert outcome.status == "FINISHED"
    assert runtime.tf32_at_init == switch and {value for _, value in runtime.seen} == {switch}, runtime.seen
    assert {name for name, _ in runtime.seen} >= {"is_available", "set_device", "get_device_properties"}
    assert os.environ[TF32_ENV] == users_own  # for the run's duration only
    (run,) = search_runs(tracking_uri)
    assert run.data.tags[f"math.{TF32_ENV}"] == switch and run.data.tags[f"env.var.{TF32_ENV}"] == switch
    assert run.data.tags["bench.precision"] == precision


def test_metax_env_that_contradicts_the_precision_is_bad_input(cli, tracking_uri: str) -> None:
    result = cli("run", "--case", "retinanet", "--vendor", "metax_c500", "--synthetic", "--precision", "fp32",
                 "--set", f"accelerator.env.{TF32_ENV}=1")
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"--set: accelerator.env.{TF32_ENV}: '1' contradicts train.precision fp32" in result.stderr
    assert result.stderr.count("\n") == 1 and search_runs(tracking_uri) == []


def test_cuda_adapter_without_devices_fails_in_one_line() -> None:
    with pytest.raises(VendorUnavailableError, match="needs a CUDA device"):
        CudaAdapter(device_module=FakeCudaModule(count=0)).check_available()


def test_cpu_adapter_refuses_math_it_cannot_do() -> None:
    adapter = CpuAdapter()
    adapter.check_precision("fp32")
    with pytest.raises(ConfigError, match="precision 'tf32' is not supported by the cpu adapter"):
        adapter.check_precision("tf32")


FAKE_XMLIR = '''
"""A stand-in for Kunlunxin's torch_xmlir: XPU devices backed by the CPU, recording calls."""
import torch
calls = []

def device(name):
    calls.append("device:" + name)
    return torch.device("cpu")

class _Xpu:
    def device_count(self):
        return 8
    def synchronize(self, device=None):
        calls.append("synchronize")
    def manual_seed_all(self, seed):
        calls.append("seed:%d" % seed)
    def max_memory_allocated(self, device=None):
        return 2 * 1024 ** 3
    def get_device_properties(self, device=None):
        class P:
            name = "R300"
            total_memory = 32 * 1024 ** 3
        return P()

xpu = _Xpu()
'''


@pytest.fixture
def fake_xmlir_path(tmp_path: Path) -> Path:
    package = tmp_path / "fake_site" / "torch_xmlir"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(FAKE_XMLIR))
    return package.parent


def test_kunlunxin_adapter_with_fake_module(monkeypatch: pytest.MonkeyPatch, fake_xmlir_path: Path) -> None:
    monkeypatch.syspath_prepend(str(fake_xmlir_path))
    monkeypatch.delitem(sys.modules, "torch_xmlir", raising=False)
    adapter = KunlunxinAdapter()
    adapter.check_available()
    device = adapter.device(3)
    adapter.manual_seed(1)
    adapter.synchronize(device)
    module = sys.modules["torch_xmlir"]
    assert module.calls == ["device:xpu:3", "seed:1", "synchronize"]
    assert adapter.memory_gib(device) == {"mem": 2.0, "mem_total": 32.0}
    assert adapter.inventory()["accelerator_model"] == "R300"
    assert adapter.visible_devices_var == "XPU_VISIBLE_DEVICES"
    with pytest.raises(ConfigError):
        adapter.check_precision("amp_bf16")


def test_kunlunxin_run_without_torch_xmlir_fails_up_front(cli, tracking_uri: str) -> None:
    result = cli("run", "--case", "faster_rcnn", "--vendor", "kunlunxin_r300", "--topology", "1x1", "--synthetic")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("accelbench: error: the kunlunxin adapter needs the 'torch_xmlir'")
    assert len(result.stderr.strip().splitlines()) == 1
    assert search_runs(tracking_uri) == []


def test_kunlunxin_run_end_to_end_on_fake_module(cli, tracking_uri: str, fake_xmlir_path: Path) -> None:
    """The whole run path through the kunlunxin adapter, with XPU env vars applied and recorded."""
    result = cli("run", "--case", "retinanet", "--vendor", "kunlunxin_r300", "--topology", "1x1", "--synthetic",
                 "--mode", "smoke", *TINY, "--set", "hp.bs=2", "--set", "model.min_size=128",
                 "--set", "model.max_size=128", env={"PYTHONPATH": str(fake_xmlir_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = search_runs(tracking_uri)
    assert run.info.status == "FINISHED"
    assert run.data.tags["bench.vendor"] == "kunlunxin_r300"
    assert run.data.tags["env.accelerator_model"] == "R300"
    assert run.data.tags["env.var.XACC_ARGS"] == "-L O0"
    assert run.data.params["accelerator.env.BKCL_PCIE_RING"] == "1"
    assert run.data.metrics["mem"] == 2.0 and run.data.metrics["mem_total"] == 32.0
