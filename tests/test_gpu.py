"""The real CUDA path: runs on an NVIDIA GPU through the CLI (skipped where torch.cuda finds no device)."""

from __future__ import annotations

import mlflow
import pytest
import torch

from suite import names
from suite.vendors.cuda import CudaAdapter
from tests.helpers import TINY, run_cli, search_runs

pytestmark = pytest.mark.gpu


def test_cuda_adapter_synchronizes_and_reads_allocator_peaks() -> None:
    adapter = CudaAdapter()
    adapter.check_available()
    device = adapter.device(0)
    adapter.reset_peak_memory(device)
    block = torch.empty(256 * 2**20, dtype=torch.uint8, device=device)  # 256 MiB
    adapter.synchronize(device)
    memory = adapter.memory_gib(device)
    assert memory["mem"] >= 0.25 and memory["mem_reserved"] >= memory["mem"]
    assert memory["mem_total"] > memory["mem"]
    del block


def test_math_flags_follow_the_precision_label() -> None:
    adapter = CudaAdapter()
    assert adapter.set_math_flags("tf32")["matmul_tf32"] == "true"
    assert torch.backends.cudnn.allow_tf32 is True
    assert adapter.set_math_flags("fp32")["matmul_tf32"] == "false"
    assert torch.backends.cuda.matmul.allow_tf32 is False and torch.backends.cudnn.allow_tf32 is False


@pytest.mark.parametrize("case", ["faster_rcnn", "retinanet", "mask_rcnn"])
def test_smoke_run_on_the_gpu(case: str, tracking_uri: str) -> None:
    name = torch.cuda.get_device_name(0)
    result = run_cli("run", "--case", case, "--vendor", "nvidia_h100", "--synthetic", "--mode", "smoke", *TINY,
                     "--set", "model.min_size=320", "--set", "model.max_size=320", "--set", "hp.bs=2",
                     "--set", f"accelerator.name={name}")
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = search_runs(tracking_uri)
    metrics, tags = run.data.metrics, run.data.tags
    assert run.info.status == "FINISHED"
    assert tags["env.accelerator_model"] == name and tags[names.TAG_PRECISION] == "tf32"
    assert tags["math.matmul_tf32"] == "true"
    assert 0 < metrics[names.MEM] < metrics[names.MEM_TOTAL]
    assert metrics[names.P_WHOLE] <= metrics[names.P_TRAIN] <= metrics[names.P_CORE]
    assert metrics[names.IMAGES] == 4 and names.MAP in metrics
    # NVML: driver and runtime versions in the environment record, sampled device memory next to the allocator's
    assert tags["env.driver"] and tags["env.cuda_driver"] and tags["env.cuda_runtime"] == torch.version.cuda
    assert tags["env.cudnn"] and tags["env.nccl"]
    assert metrics[names.MEM_SMI] >= metrics[names.MEM] * 0.9  # the driver sees at least what the allocator holds
    history = mlflow.MlflowClient(tracking_uri).get_metric_history(run.info.run_id, "device_memory_used_gib")
    assert len(history) >= 2
    # the published pages' host-clock p_core, and the energy NVML's counter measured over the timed steps
    assert metrics[names.P_CORE_UNSYNCED] >= metrics[names.P_CORE]
    assert metrics[names.ENERGY_PER_IMAGE] > 0 and metrics[names.ENERGY_J] > 0
    assert 0 < metrics[names.MFU] < 1 and float(run.data.params[names.PARAM_PEAK_TFLOPS]) == 495  # H100 tf32
