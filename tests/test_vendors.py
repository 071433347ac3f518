"""Vendor adapters against small fake device modules, so the metax and kunlunxin code paths run without hardware."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pandas as pd
import pytest
import torch

from suite.errors import ConfigError, RunError, VendorUnavailableError
from suite.names import GIB
from suite.vendors.cpu import CpuAdapter
from suite.vendors.cuda import CudaAdapter
from suite.vendors.kunlunxin import KunlunxinAdapter
from suite.vendors.metax import TF32_ENV, MetaxAdapter
from tests.helpers import LIGHT_SETTINGS, STANDINS, invoke, search_runs, tool_on_path

TINY_RUN = ["train.mode=smoke", "train.max_steps=2", "data.workers=0", "hp.bs=2", "data.synthetic.train=4",
            "data.synthetic.val=2", *LIGHT_SETTINGS]


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
    cudnn = torch.backends.cudnn
    saved = torch.backends.cuda.matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark, cudnn.deterministic
    yield
    torch.backends.cuda.matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark, cudnn.deterministic = saved


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

    from suite.config import resolve
    from suite.launch import runner

    users_own = "1" if switch == "0" else "0"  # the user's shell says the opposite; the run must not inherit it
    monkeypatch.setenv(TF32_ENV, users_own)
    runtime = MacaRuntimeStandIn()
    resolved = resolve("faster_rcnn", "metax_c500", "1x1", [*TINY_RUN, f"train.precision={precision}",
                                                            "train.max_steps=1"])
    outcome = runner.run(resolved, synthetic=True, started_at=time.time(),
                         adapter=MetaxAdapterOnStandIn(device_module=runtime))
    assert outcome.status == "FINISHED"
    assert runtime.tf32_at_init == switch and {value for _, value in runtime.seen} == {switch}, runtime.seen
    assert {name for name, _ in runtime.seen} >= {"is_available", "set_device", "get_device_properties"}
    assert os.environ[TF32_ENV] == users_own  # for the run's duration only
    (run,) = search_runs(tracking_uri)
    assert run.data.tags[f"math.{TF32_ENV}"] == switch and run.data.tags[f"env.var.{TF32_ENV}"] == switch
    assert run.data.tags["bench.precision"] == precision


def test_metax_env_that_contradicts_the_precision_is_bad_input(tracking_uri: str) -> None:
    result = invoke("run", "--case", "retinanet", "--vendor", "metax_c500", "--synthetic", "--precision", "fp32",
                 "--set", f"accelerator.env.{TF32_ENV}=1")
    assert result.exit_code == 2, result.stderr[-2000:]
    assert f"--set: accelerator.env.{TF32_ENV}: '1' contradicts train.precision fp32" in result.stderr
    assert result.stderr.count("\n") == 1 and search_runs(tracking_uri) == []


def test_cuda_precision_env_keeps_nvidia_overrides_in_line_with_the_label(monkeypatch: pytest.MonkeyPatch,
                                                                         restore_tf32: None) -> None:
    adapter = CudaAdapter(device_module=FakeCudaModule())
    assert adapter.precision_env("fp32") == {"NVIDIA_TF32_OVERRIDE": "0", "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "0"}
    assert adapter.precision_env("amp_bf16")["NVIDIA_TF32_OVERRIDE"] == "0"
    assert adapter.precision_env("tf32") == {"NVIDIA_TF32_OVERRIDE": "1"}
    monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", "0")
    monkeypatch.setenv("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "0")
    flags = adapter.set_math_flags("fp32")  # the math tags say what the overrides were, too
    assert flags["NVIDIA_TF32_OVERRIDE"] == "0" and flags["matmul_tf32"] == "false"


def test_cuda_adapter_without_devices_fails_in_one_line() -> None:
    with pytest.raises(VendorUnavailableError, match="needs a CUDA device"):
        CudaAdapter(device_module=FakeCudaModule(count=0)).check_available()


def test_cpu_adapter_refuses_math_it_cannot_do() -> None:
    adapter = CpuAdapter()
    adapter.check_precision("fp32")
    with pytest.raises(ConfigError, match="precision 'tf32' is not supported by the cpu adapter"):
        adapter.check_precision("tf32")



@pytest.fixture
def r300_xmlir(monkeypatch: pytest.MonkeyPatch) -> object:
    """The R300-era torch_xmlir stand-in, imported fresh (its call log empty)."""
    monkeypatch.syspath_prepend(str(STANDINS / "xmlir_r300"))
    monkeypatch.delitem(sys.modules, "torch_xmlir", raising=False)
    import torch_xmlir

    yield torch_xmlir
    sys.modules.pop("torch_xmlir", None)


def _tool_on_path(monkeypatch: pytest.MonkeyPatch, folder: Path, name: str, recorded: str) -> None:
    monkeypatch.setenv("PATH", tool_on_path(folder, name, recorded)["PATH"])


def test_kunlunxin_r300_run_end_to_end_on_the_torch_xmlir_stand_in(r300_xmlir: object, tracking_uri: str,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    """The whole run through the real kunlunxin adapter, trainer and tracking on the R300-era API; telemetry from a
    stand-in `xpu-smi` printing recorded output."""
    import time

    from suite.config import resolve
    from suite.launch import runner

    _tool_on_path(monkeypatch, tmp_path / "bin", "xpu-smi", "xpu-smi_-m_P800_x2.txt")
    resolved = resolve("faster_rcnn", "kunlunxin_r300", "1x1", [*TINY_RUN, "hp.seed=7"])
    outcome = runner.run(resolved, synthetic=True, started_at=time.time())
    assert outcome.status == "FINISHED"
    calls = r300_xmlir.calls
    assert calls[0] == "device:xpu:0" and "manual_seed_all:7" in calls
    # a synchronize at both edges of the measured region and of every timed window (2 steps, 2 evaluations: the
    # untrained model's, which the R300 configs have as the publisher's did, and the final one)
    steps, evaluations = int(outcome.metrics["steps"]), 2
    assert "init_eval_time" in outcome.metrics
    assert calls.count("xpu_synchronize") == 2 + 2 * (steps + evaluations)
    (run,) = search_runs(tracking_uri)
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    assert tags["math.kunlunxin_api"] == "torch_xmlir" and tags["env.kunlunxin_api"] == "torch_xmlir"
    assert tags["env.var.XACC_ARGS"] == "-L O0" and params["accelerator.env.BKCL_PCIE_RING"] == "1"
    assert tags["env.telemetry_source"] == "xpu-smi -m" and tags["env.accelerator_count"] == "2"
    # no public R300 code reads allocator memory: the tool's figures stand in, the allocator's stays missing
    assert "mem" not in metrics and metrics["mem_total"] == 96.0
    assert metrics["mem_smi"] == pytest.approx(90440 / 1024) and metrics["device_temperature_max_c"] == 36


def test_kunlunxin_mask_rcnn_runs_int16_convolutions_and_says_so(r300_xmlir: object, tracking_uri: str) -> None:
    """The publisher's R300 Mask R-CNN rows ran XDNN_CONV_GEMM_DTYPE=int16 under a page saying "fp32": a run of the
    reference config on the stand-in sets it from its precision label, records it, and the comparison shows the
    page's "fp32" beside the label with a note."""
    import time

    from suite import results
    from suite.config import resolve
    from suite.launch import runner
    from suite.results.published import import_published, load_published

    resolved = resolve("mask_rcnn", "kunlunxin_r300", "1x1", [*TINY_RUN[:-len(LIGHT_SETTINGS)],
                                                              "model.min_size=96", "model.max_size=96"])
    outcome = runner.run(resolved, synthetic=True, started_at=time.time())
    assert outcome.status == "FINISHED"
    (run,) = search_runs(tracking_uri)
    tags, params = run.data.tags, run.data.params
    assert tags["bench.precision"] == "fp32_conv_int16" and params["precision"] == "fp32_conv_int16"
    assert tags["env.var.XDNN_CONV_GEMM_DTYPE"] == "int16" and tags["math.XDNN_CONV_GEMM_DTYPE"] == "int16"
    assert params["accelerator.env.XACC_INSTALL_RUNTIME_HOOKER"] == "4"
    assert tags["bench.reproduces"].endswith("training/kunlunxin/mask_rcnn-pytorch/config/config_R300x1x1.py")

    import_published(load_published(["kunlunxin_r300"]))
    table = results.compare(case="mask_rcnn", vendors=["kunlunxin_r300"], baseline="kunlunxin_r300").table
    published = table[(table["source"] == "published") & (table["topology"] == "1x8")].iloc[0]
    assert published["precision"] == "fp32_conv_int16" and published["precision_published"] == "fp32"
    assert (published["map"], published["map_segm"]) == (pytest.approx(0.384), pytest.approx(0.346))
    assert "XDNN_CONV_GEMM_DTYPE=int16" in published["published_note"]
    assert published["mem_smi"] == 11.3 and published["mem_total"] == 32.0 and pd.isna(published["mem"])


def test_kunlunxin_math_flags_follow_the_precision_and_name_host_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch_xmlir", None)
    adapter = KunlunxinAdapter(cuda_module=FakeCudaModule(count=1))
    assert adapter.precision_env("fp32_conv_int16") == {"XDNN_CONV_GEMM_DTYPE": "int16"}
    assert adapter.precision_env("fp32") == {}
    monkeypatch.setenv("XMLIR_D_FORCE_FALLBACK_STR", "aten::_index_put_impl_,aten::index.Tensor")
    assert adapter.set_math_flags("fp32")["cpu_fallback_ops"] == "aten::_index_put_impl_,aten::index.Tensor"
    monkeypatch.setenv("XDNN_CONV_GEMM_DTYPE", "int16")  # inherited from the shell: the label would lie
    with pytest.raises(RunError, match="XDNN_CONV_GEMM_DTYPE is 'int16' in this process, but precision fp32"):
        adapter.set_math_flags("fp32")
    assert adapter.set_math_flags("fp32_conv_int16")["XDNN_CONV_GEMM_DTYPE"] == "int16"
    assert adapter.set_cudnn_flags(True, False) == {"cudnn_benchmark": "n/a", "cudnn_deterministic": "n/a"}


def test_cuda_applies_the_cases_cudnn_flags(restore_tf32: None) -> None:
    adapter = CudaAdapter(device_module=FakeCudaModule())
    assert adapter.set_cudnn_flags(True, False) == {"cudnn_benchmark": "true", "cudnn_deterministic": "false"}
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    assert adapter.set_cudnn_flags(False, True) == {"cudnn_benchmark": "false", "cudnn_deterministic": "true"}
    assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic


def test_kunlunxin_without_xpu_synchronize_is_a_one_line_error(tracking_uri: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(STANDINS / "xmlir_without_sync"))
    monkeypatch.delitem(sys.modules, "torch_xmlir", raising=False)
    result = invoke("run", "--case", "faster_rcnn", "--vendor", "kunlunxin_r300", "--synthetic")
    sys.modules.pop("torch_xmlir", None)
    assert result.exit_code == 2, result.stderr[-2000:]
    assert result.stderr.strip() == ("accelbench: error: this torch_xmlir lacks torch_xmlir.xpu.xpu_synchronize, "
                                     "which the kunlunxin adapter calls (the R200/R300-era API)")
    assert search_runs(tracking_uri) == []


def test_kunlunxin_without_any_stack_fails_up_front(tracking_uri: str) -> None:
    result = invoke("run", "--case", "faster_rcnn", "--vendor", "kunlunxin_r300", "--topology", "1x1", "--synthetic")
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("accelbench: error: the kunlunxin adapter needs Kunlunxin's PyTorch")
    assert len(result.stderr.strip().splitlines()) == 1
    assert search_runs(tracking_uri) == []


def test_kunlunxin_xpytorch_stack_goes_through_torch_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Newer stacks (XPyTorch, P800) register the XPU as CUDA: the same adapter uses torch.cuda there."""
    monkeypatch.setitem(sys.modules, "torch_xmlir", None)  # not installed
    fake = FakeCudaModule(count=8)
    adapter = KunlunxinAdapter(cuda_module=fake)
    adapter.check_available()
    assert adapter.api == "torch.cuda" and adapter.device_count() == 8
    device = adapter.device(3)
    adapter.manual_seed(5)
    adapter.synchronize(device)
    assert device == torch.device("cuda", 3) and fake.calls == ["set_device:3", "seed:5", "synchronize"]
    assert adapter.set_math_flags("fp32") == {"autocast": "off", "kunlunxin_api": "torch.cuda"}
    assert adapter.memory_gib(device) == {"mem": 3.0, "mem_reserved": 4.0, "mem_total": 64.0}
    with pytest.raises(ConfigError):
        adapter.check_precision("amp_bf16")


def test_metax_run_samples_the_device_tool_and_records_its_versions(
        monkeypatch: pytest.MonkeyPatch, restore_tf32: None, tracking_uri: str, tmp_path: Path) -> None:
    """A metax_c500 run samples `mx-smi` (a stand-in printing recorded 2.2.9 output) like NVML on NVIDIA."""
    import time

    from suite.config import resolve
    from suite.launch import runner

    _tool_on_path(monkeypatch, tmp_path / "bin", "mx-smi", "mx-smi_2.2.9_C500_x8.txt")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # the process's device 0 is the tool's device 3
    monkeypatch.setattr(torch, "__version__", "2.6.0+metax3.3.0.15")  # the MACA build's version string
    resolved = resolve("faster_rcnn", "metax_c500", "1x1", [*TINY_RUN, "train.precision=fp32",
                                                          "tracking.telemetry_interval_s=0.1"])
    outcome = runner.run(resolved, synthetic=True, started_at=time.time(),
                         adapter=MetaxAdapterOnStandIn(device_module=MacaRuntimeStandIn()))
    assert outcome.status == "FINISHED"
    (run,) = search_runs(tracking_uri)
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["env.telemetry_source"] == "mx-smi" and tags["env.telemetry_tool_version"] == "2.2.9"
    assert tags["env.maca"] == "3.3.0.15" and tags["env.driver"] == "3.4.4" and tags["env.torch_maca"] == "3.3.0.15"
    assert metrics["mem_smi"] == pytest.approx(826 / 1024)
    assert metrics["device_power_mean_w"] == 60 and metrics["device_temperature_max_c"] == 35
    assert "energy_per_image" not in metrics  # mx-smi has no energy counter: missing, never made up
    client = mlflow.MlflowClient(tracking_uri)
    assert len(client.get_metric_history(run.info.run_id, "device_memory_used_gib")) >= 3
