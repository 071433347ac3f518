"""What ran where: host, software versions, accelerator inventory and code version, as `env.*` tags.

Only facts this machine can state are recorded; a field that cannot be known is left out, never filled with a
placeholder. Environment variables are captured from an allow-list, so no secret can leak into a run.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from suite.names import GIB
from suite.vendors.base import VendorAdapter
from suite.vendors.host import cpu_model, host_memory_bytes

PACKAGES = ("torch", "torchvision", "pycocotools", "mlflow", "numpy", "pydantic")
# Variables that change math or communication; values of anything else are never read.
# NVIDIA (NCCL_), MetaX (MCCL_ communication, MACA_ runtime, METAX_ math) and Kunlunxin (BKCL_ communication,
# XPU_ devices, XDNN_/XMLIR_/XACC_ math and compiler).
ENV_ALLOW_PREFIXES = ("NCCL_", "MCCL_", "MACA_", "METAX_", "BKCL_", "XPU_", "XACC_", "XDNN_", "XMLIR_")
ENV_ALLOW_NAMES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "GLOO_SOCKET_IFNAME",
                   "NVIDIA_TF32_OVERRIDE", "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "CUBLAS_WORKSPACE_CONFIG",
                   "CUDA_LAUNCH_BLOCKING", "NVIDIA_PYTORCH_VERSION", "PYTORCH_CUDA_ALLOC_CONF")
SECRET_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "KEY", "CREDENTIAL", "AUTH")


def _os_release() -> str | None:
    try:
        for line in Path("/etc/os-release").read_text(encoding="utf-8").splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return None


def _package_versions(packages: Iterable[str]) -> dict[str, str]:
    versions = {}
    for package in packages:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def captured_env_vars(environ: Mapping[str, str], extra_names: Iterable[str] = ()) -> dict[str, str]:
    """Allow-listed variables only, and never one whose name looks like a secret."""
    allowed = set(ENV_ALLOW_NAMES) | set(extra_names)
    captured = {}
    for name, value in environ.items():
        if any(marker in name.upper() for marker in SECRET_MARKERS):
            continue
        if name in allowed or name.startswith(ENV_ALLOW_PREFIXES):
            captured[name] = value
    return dict(sorted(captured.items()))


def container() -> dict[str, str]:
    """Whether this process runs in a container, and its image where the runtime tells (podman does)."""
    found: dict[str, str] = {}
    if Path("/run/.containerenv").is_file():
        found["container"] = "podman"
        try:
            for line in Path("/run/.containerenv").read_text(encoding="utf-8").splitlines():
                if line.startswith("image="):
                    found["container_image"] = line.split("=", 1)[1].strip().strip('"')
        except OSError:
            pass
    elif Path("/.dockerenv").exists():
        found["container"] = "docker"
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        found["container"] = "kubernetes"
    else:
        try:
            cgroup = Path("/proc/1/cgroup").read_text(encoding="utf-8")
        except OSError:
            cgroup = ""
        for marker in ("docker", "kubepods", "containerd", "lxc"):
            if marker in cgroup:
                found["container"] = marker
                break
    return found


def infiniband(root: Path = Path("/sys/class/infiniband")) -> dict[str, str]:
    """InfiniBand/RoCE adapters and their link rates, e.g. "mlx5_0 port 1: 200 Gb/sec (4X HDR)"."""
    links = []
    for device in sorted(root.glob("*")):
        for port in sorted((device / "ports").glob("*")):
            try:
                rate = (port / "rate").read_text(encoding="utf-8").strip()
                state = (port / "state").read_text(encoding="utf-8").strip()
            except OSError:
                continue
            if "ACTIVE" in state:
                links.append(f"{device.name} port {port.name}: {rate}")
    return {"interconnect": "; ".join(links)} if links else {}


# MLPerf's system description names for the fields that mean the same thing (environment.json carries both).
MLPERF_FIELDS = {
    "hostname": "system_name",
    "os_version": "operating_system",
    "cpu_model": "host_processor_model_name",
    "cpu_count": "host_processor_core_count",
    "host_memory_gib": "host_memory_capacity",
    "accelerator_model": "accelerator_model_name",
    "accelerator_count": "accelerators_per_node",
    "accelerator_memory_gib": "accelerator_memory_capacity",
    "accelerator_nvlinks_active": "accelerator_interconnect",
    "interconnect": "host_networking",
}
MLPERF_SOFTWARE = ("driver", "cuda_driver", "cuda_runtime", "cudnn", "nccl", "python",
                   "torchvision", "pycocotools", "mlflow")


def mlperf_system_description(record: Mapping[str, str], nnodes: int) -> dict[str, str]:
    described = {MLPERF_FIELDS[k]: v for k, v in record.items() if k in MLPERF_FIELDS}
    for key in ("host_memory_capacity", "accelerator_memory_capacity"):
        if key in described:
            described[key] += " GiB"
    if "torch" in record:
        described["framework"] = f"PyTorch {record['torch']}"
    software = [f"{k} {record[k]}" for k in MLPERF_SOFTWARE if k in record]
    if software:
        described["other_software_stack"] = ", ".join(software)
    described["number_of_nodes"] = str(nnodes)
    return described


def merge_nodes(records: list[dict[str, str]]) -> dict[str, str]:
    """One record for a multi-node job: a field the nodes agree on keeps its value; otherwise each node's."""
    merged: dict[str, str] = {}
    for key in sorted({k for r in records for k in r}):
        values = [r.get(key) for r in records]
        if len(set(values)) == 1:
            merged[key] = values[0] or ""
        else:
            merged[key] = "; ".join(f"node{i}: {v if v is not None else '-'}" for i, v in enumerate(values))
    return {k: v for k, v in merged.items() if v}


def collect(adapter: VendorAdapter, vendor_env_names: Iterable[str] = ()) -> dict[str, str]:
    """The environment record of this host as flat string fields (logged as `env.<field>` tags)."""
    record: dict[str, str | None] = {
        "hostname": socket.gethostname(),
        "os": platform.system(),
        "os_version": _os_release(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": str(os.cpu_count()) if os.cpu_count() else None,
    }
    memory = host_memory_bytes()
    if memory:
        record["host_memory_gib"] = f"{memory / GIB:.1f}"
    record.update(_package_versions(PACKAGES))
    record["torch_threads"] = str(torch.get_num_threads())
    record.update(container())
    record.update(infiniband())
    record.update(adapter.inventory())
    for name, value in captured_env_vars(os.environ, vendor_env_names).items():
        record[f"var.{name}"] = value
    return {k: v for k, v in record.items() if v}
