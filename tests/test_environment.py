"""Environment and provenance of a real CPU run: env record, code and data provenance, telemetry, no secrets."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import mlflow
import pytest

from suite import names
from suite.engine.telemetry import Sampler
from suite.launch import environment
from suite.redaction import redact_uri
from suite.vendors.probes import DeviceReading
from tests.helpers import LIGHT_RUN, REPO, invoke, search_runs

SECRETS = {"MLFLOW_TRACKING_PASSWORD": "hunter2-mlflow-pw-8f3a", "AWS_SECRET_ACCESS_KEY": "aws-secret-5c1e-9d77",
           "NCCL_IB_AUTH_TOKEN": "nccl-token-77aa"}  # allow-listed prefix, secret-looking name
PLACEHOLDERS = {"", "unknown", "none", "null", "n/a", "?", "-"}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> dict:
    """One real run with secrets and a math-relevant variable in its environment, read back in full."""
    folder = tmp_path_factory.mktemp("provenance")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    env = {**SECRETS, "NCCL_DEBUG": "WARN", "MLFLOW_TRACKING_URI": uri, "ACCELBENCH_CACHE": str(cache_dir),
           "GIT_PYTHON_REFRESH": "quiet", "TMPDIR": str(folder)}
    result = invoke(*LIGHT_RUN, env=env, console=True)  # what it records and prints, not the process, is tested
    assert result.exit_code == 0, result.stderr[-3000:]
    (run,) = search_runs(uri)
    artifacts = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(folder / "art"),
                                                         tracking_uri=uri))
    return {"run": run, "uri": uri, "artifacts": artifacts, "output": result.stdout + result.stderr}


def test_cpu_run_records_every_knowable_environment_field(recorded: dict) -> None:
    tags = recorded["run"].data.tags
    for field in ("hostname", "os", "os_version", "kernel", "python", "cpu_model", "cpu_count", "host_memory_gib",
                  "torch", "torchvision", "pycocotools", "mlflow", "accelerator_model", "accelerator_count",
                  "accelerator_memory_gib", "torch_threads"):
        assert tags.get(f"env.{field}", "").strip().lower() not in PLACEHOLDERS, field
    env_tags = {k: v for k, v in tags.items() if k.startswith("env.")}
    assert not [k for k, v in env_tags.items() if v.strip().lower() in PLACEHOLDERS]
    assert tags["env.var.NCCL_DEBUG"] == "WARN"
    assert tags["math.autocast"] == "off" and "math.num_threads" in tags

    document = json.loads((recorded["artifacts"] / names.ARTIFACT_ENVIRONMENT).read_text())
    assert document["fields"] == {k[len("env."):]: v for k, v in env_tags.items()}
    assert document["math_flags"]["autocast"] == "off" and len(document["nodes"]) == 1
    mlperf = document["mlperf_system_description"]
    assert mlperf["host_processor_model_name"] == tags["env.cpu_model"]
    assert mlperf["framework"] == f"PyTorch {tags['env.torch']}" and mlperf["number_of_nodes"] == "1"


def test_code_and_data_provenance(recorded: dict) -> None:
    run = recorded["run"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert run.data.tags[names.TAG_GIT_COMMIT] == head
    assert run.data.tags[names.TAG_GIT_DIRTY] in ("true", "false")
    assert len(run.data.tags[names.TAG_CONFIG_HASH]) == 12
    (dataset_input,) = run.inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert dataset.name == "synthetic-shapes" and dataset.digest == run.data.tags[names.TAG_DATA_FINGERPRINT]
    assert json.loads(dataset.source)["uri"] == run.data.tags[names.TAG_DATA_ROOT]
    profile = json.loads(dataset.profile)
    assert profile["train_images"] == int(run.data.params["data.train_images"]) == 8
    assert profile["val_images"] == int(run.data.params["data.val_images"]) == 4
    assert set(profile["files"]) == {"annotations/instances_train2017.json", "annotations/instances_val2017.json"}
    assert all(len(sha) == 64 for sha in profile["files"].values())
    assert [t.value for t in dataset_input.tags if t.key == "mlflow.data.context"] == ["training"]


def test_secret_values_appear_nowhere_in_the_run(recorded: dict) -> None:
    run = recorded["run"]
    recorded_text = [*run.data.tags.items(), *run.data.params.items(), *((k, "") for k in run.data.metrics),
                     *((d.dataset.profile or "", d.dataset.source) for d in run.inputs.dataset_inputs)]
    files = [p for p in recorded["artifacts"].rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"environment.json", "events.jsonl", "rank0.log", "resolved.yaml"}
    for name, value in SECRETS.items():
        assert not any(value in key or value in text for key, text in recorded_text), name
        assert not any(name in key for key, _ in recorded_text), name
        for path in files:
            assert value.encode() not in path.read_bytes(), (name, path)
        assert value not in recorded["output"]


def test_tracking_uri_credentials_are_redacted() -> None:
    assert redact_uri("https://bench:s3cret@mlflow.example.com:5000/") == "https://bench:***@mlflow.example.com:5000/"
    assert redact_uri("sqlite:///mlflow.db") == "sqlite:///mlflow.db"


def test_nodes_merge_into_one_record() -> None:
    merged = environment.merge_nodes([{"torch": "2.14.1", "hostname": "a", "driver": "580"},
                                      {"torch": "2.14.1", "hostname": "b"}])
    assert merged == {"torch": "2.14.1", "hostname": "node0: a; node1: b", "driver": "node0: 580; node1: -"}


def test_infiniband_links_from_sysfs(tmp_path: Path) -> None:
    for device, port, rate, state in (("mlx5_0", "1", "200 Gb/sec (4X HDR)", "4: ACTIVE"),
                                      ("mlx5_1", "1", "100 Gb/sec (4X EDR)", "1: DOWN")):
        folder = tmp_path / device / "ports" / port
        folder.mkdir(parents=True)
        (folder / "rate").write_text(rate + "\n")
        (folder / "state").write_text(state + "\n")
    assert environment.infiniband(tmp_path) == {"interconnect": "mlx5_0 port 1: 200 Gb/sec (4X HDR)"}
    assert environment.infiniband(tmp_path / "absent") == {}


class ScriptedDevice:
    """A device that reports a fixed sequence of readings (memory climbs, the energy counter advances)."""

    def __init__(self) -> None:
        self.count = 0

    def read(self) -> DeviceReading:
        self.count += 1
        return DeviceReading(time=float(self.count), memory_used_gib=min(self.count, 5) * 2.0,
                             utilization_pct=50.0, power_w=300.0, energy_j=1000.0 + 30.0 * self.count)

    def facts(self) -> dict[str, str]:
        return {}

    def close(self) -> None:
        return None


def test_sampler_keeps_the_peak_and_the_energy_the_counter_advanced() -> None:
    device = ScriptedDevice()
    sampler = Sampler(device, interval_s=0.01)
    sampler.start()
    while device.count < 8:
        pass
    sampler.mark("start")
    while device.count < 12:
        pass
    sampler.mark("stop")
    sampler.stop()
    sampler.stop()  # idempotent
    summary = sampler.summary()
    assert summary["energy_j"] == sampler.edges["stop"].energy_j - sampler.edges["start"].energy_j
    assert 0 < summary["energy_j"] < summary["device_energy_j"]
    assert summary["mem_smi"] == 10.0 and summary["device_utilization_mean"] == 50.0
    assert summary["device_power_mean_w"] == 300.0
    readings = sampler.readings
    assert summary["device_energy_j"] == readings[-1].energy_j - readings[0].energy_j > 0
    series = sampler.series()
    assert [index for index, _, _ in series] == list(range(len(readings)))
    assert series[0][2] == {"device_memory_used_gib": 2.0, "device_utilization_pct": 50.0, "device_power_w": 300.0}
