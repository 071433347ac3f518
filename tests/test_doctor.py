"""`accelbench doctor` through the real CLI: the CPU vendor ready, and the MetaX and Kunlunxin checks on this
GPU-less machine with stand-ins for the vendors' own library and tools only."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers import SMI, STANDINS, invoke, search_runs, tool_on_path

CHECKS = ["python", "torch", "torchvision", "stack", "devices", "precision", "backend", "compute", "memory",
          "telemetry", "data", "weights", "tracking", "spool", "mfu"]


def _statuses(stdout: str) -> dict[str, str]:
    lines = stdout.splitlines()[1:-1]
    return {line.split()[1]: line.split()[0] for line in lines}


def _line(stdout: str, name: str) -> str:
    return next(line for line in stdout.splitlines()[1:] if line.split()[1] == name)


def _tool_bin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, recorded: str) -> None:
    monkeypatch.setenv("PATH", tool_on_path(tmp_path / "bin", name, recorded)["PATH"])


def test_doctor_on_the_cpu_vendor_is_ready_and_records_nothing(tmp_path: Path, tracking_uri: str) -> None:
    root = tmp_path / "data"
    assert invoke("make-data", "--out", str(root), "--train", "4", "--val", "2").exit_code == 0
    result = invoke("doctor", "--vendor", "cpu", "--case", "retinanet", "--data-root", str(root), "--json")
    assert result.exit_code == 0, result.stdout + result.stderr[-2000:]
    document = json.loads(result.stdout)
    checks = {c["name"]: c for c in document["checks"]}
    assert document["ready"] is True and list(checks) == CHECKS
    assert {c["status"] for c in checks.values()} <= {"ok", "warn"}, result.stdout
    assert checks["compute"]["status"] == checks["backend"]["status"] == checks["data"]["status"] == "ok"
    assert "one retinanet training step at 128 px on cpu" in checks["compute"]["detail"]
    assert "annotations valid (train_images 4" in checks["data"]["detail"]
    assert search_runs(tracking_uri) == []  # it creates no MLflow run


def test_doctor_reports_what_is_wrong_and_exits_1(tmp_path: Path) -> None:
    weights = tmp_path / "resnet50-0676ba61.pth"
    weights.write_bytes(b"not the file")
    result = invoke("doctor", "--vendor", "cpu", "--data-root", str(tmp_path / "nowhere"),
                    "--set", f"model.backbone_weights={weights}")
    assert result.exit_code == 1, result.stdout + result.stderr[-2000:]
    statuses = _statuses(result.stdout)
    assert statuses["data"] == "FAIL" and "does not exist" in _line(result.stdout, "data")
    assert statuses["weights"] == "FAIL" and "but its name says 0676ba61" in _line(result.stdout, "weights")
    assert list(statuses) == CHECKS and result.stdout.rstrip().endswith("not ready: fix the failed checks")


def test_doctor_for_metax_without_a_device_still_reads_the_tool(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _tool_bin(monkeypatch, tmp_path, "mx-smi", "mx-smi_2.2.9_C500_x8.txt")
    result = invoke("doctor", "--vendor", "metax_c500")
    assert result.exit_code == 1, result.stdout + result.stderr[-2000:]
    statuses = _statuses(result.stdout)
    assert statuses["stack"] == "FAIL" and "needs a CUDA device" in _line(result.stdout, "stack")
    assert statuses["compute"] == statuses["backend"] == "SKIP"
    telemetry = _line(result.stdout, "telemetry")
    assert statuses["telemetry"] == "OK" and "mx-smi 2.2.9 (driver 3.4.4, maca 3.3.0.15)" in telemetry
    assert "of 64.0 GiB, power 57.0 W, temperature 35.0 C" in telemetry and "energy counter none" in telemetry


def test_doctor_for_kunlunxin_on_the_r300_stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tool_bin(monkeypatch, tmp_path, "xpu-smi", "xpu-smi_-m_P800_x2.txt")
    monkeypatch.syspath_prepend(str(STANDINS / "xmlir_r300"))
    monkeypatch.delitem(sys.modules, "torch_xmlir", raising=False)
    result = invoke("doctor", "--vendor", "kunlunxin_r300", "--case", "faster_rcnn")
    sys.modules.pop("torch_xmlir", None)
    statuses = _statuses(result.stdout)
    assert statuses["stack"] == "OK" and "API torch_xmlir" in _line(result.stdout, "stack")
    assert statuses["devices"] == "OK" and "2 visible" in _line(result.stdout, "devices")
    assert statuses["compute"] == "OK"  # the model stepped through the adapter on the stand-in
    assert statuses["memory"] == "WARN" and "mem_smi" in _line(result.stdout, "memory")
    assert statuses["telemetry"] == "OK" and "xpu-smi -m" in _line(result.stdout, "telemetry")
    # the stand-in registers no xccl backend, as a real torch_xmlir would: the doctor says so
    assert statuses["backend"] == "FAIL" and "XCCL" in _line(result.stdout, "backend").upper()
    assert result.exit_code == 1


@pytest.mark.parametrize("vendor", ["nvidia_h100", "nvidia_a100", "metax_c500", "kunlunxin_r300"])
def test_doctor_without_the_vendors_driver_warns_about_telemetry_in_one_line(vendor: str) -> None:
    """This machine has no NVIDIA driver (nor MetaX, nor Kunlunxin): telemetry is a WARN with its reason, the
    same for every vendor, never a FAIL carrying a raw exception."""
    import torch

    if vendor.startswith("nvidia") and torch.cuda.is_available():
        pytest.skip("this machine has an NVIDIA driver")
    result = invoke("doctor", "--vendor", vendor)
    line = _line(result.stdout, "telemetry")
    assert _statuses(result.stdout)["telemetry"] == "WARN", line
    assert "runs will have no mem_smi, power or utilisation" in line and "Traceback" not in result.stdout
    if vendor.startswith("nvidia"):
        assert "(torch sees no CUDA device: Found no NVIDIA driver on your system)" in line


def test_doctor_reads_an_mx_smi_table_without_the_header_rule(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """mx-smi 2.2.6 as its public documentation shows it has no `|====|` line: the doctor found no telemetry."""
    recorded = (SMI / "mx-smi_2.2.9_C500_x8.txt").read_text()
    bare = "\n".join(line for line in recorded.splitlines() if not line.strip().startswith("|="))
    monkeypatch.setenv("PATH", tool_on_path(tmp_path / "bin", "mx-smi", text=bare)["PATH"])
    result = invoke("doctor", "--vendor", "metax_c500")
    telemetry = _line(result.stdout, "telemetry")
    assert _statuses(result.stdout)["telemetry"] == "OK", telemetry
    assert "of 64.0 GiB, power 57.0 W, temperature 35.0 C" in telemetry
