"""Vendor adapters against small fake device modules, so the metax and kunlunxin code paths run without hardware."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from suite.errors import ConfigError, VendorUnavailableError
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

    flags = adapter.set_math_flags("tf32")
    assert os.environ[TF32_ENV] == "1" and flags[TF32_ENV] == "1"
    assert flags["matmul_tf32"] == "true" and flags["cudnn_tf32"] == "true"
    flags = adapter.set_math_flags("fp32")
    assert os.environ[TF32_ENV] == "0" and flags["matmul_tf32"] == "false"

    assert adapter.memory_gib(device) == {"mem": 3.0, "mem_reserved": 4.0, "mem_total": 64.0}
    assert adapter.inventory() == {"accelerator_model": "MetaX C500", "accelerator_count": "2",
                                   "accelerator_memory_gib": "64.0"}
    assert adapter.visible_devices_var == "CUDA_VISIBLE_DEVICES"


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
