"""A Kubeflow PyTorchJob by its contract: the environment the training operator gives each pod (real processes, a
real 2-node CPU job on this machine), and the manifest `accelbench submit --scheduler kubernetes --dry-run` prints,
loaded back and checked against the PyTorchJob's fields. No Kubernetes cluster runs here."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from suite import names
from tests.helpers import LIGHT, REPO, free_port, invoke, search_runs

RUN_2X1 = ["run", "--case", "faster_rcnn", "--vendor", "cpu", "--synthetic", "--mode", "smoke", "--topology", "2x1",
           *LIGHT]


def _pods(pod_env: list[dict[str, str]]) -> list[subprocess.CompletedProcess[str]]:
    """One `accelbench run` per pod, started at once with nothing but the pod's environment to go by."""
    processes = [subprocess.Popen([sys.executable, "-m", "suite", *RUN_2X1], cwd=REPO, env={**os.environ, **env},
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for env in pod_env]
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=600), *p.communicate()) for p in processes]


def test_a_pytorchjob_pod_needs_no_rank_or_master_flags(tracking_uri: str) -> None:
    port = str(free_port())
    common = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "PET_NNODES": "2", "PET_NPROC_PER_NODE": "1",
              "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "WORLD_SIZE": "2", "ACCELBENCH_K8S_NAMESPACE": "bench"}
    done = _pods([{**common, "PET_NODE_RANK": "0", "RANK": "0", "HOSTNAME": "ab-2x1-master-0"},
                  {**common, "PET_NODE_RANK": "1", "RANK": "1", "HOSTNAME": "ab-2x1-worker-0"}])
    for pod in done:
        assert pod.returncode == 0, pod.stderr[-3000:]
    (run,) = search_runs(tracking_uri)
    tags = run.data.tags
    assert run.info.status == "FINISHED" and tags[names.TAG_WORLD_SIZE] == "2"
    assert (tags[names.TAG_SCHEDULER], tags["kubernetes.job_name"], tags["kubernetes.namespace"]) == (
        "kubernetes", "ab-2x1", "bench")
    assert run.data.params["dist.master_port"] == port


def test_the_operators_older_form_and_a_job_that_does_not_fit(tracking_uri: str) -> None:
    """MASTER_ADDR, MASTER_PORT, WORLD_SIZE (pods) and RANK only: the same run; a 3-pod job for 2x1 is refused."""
    port = str(free_port())
    common = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
              "WORLD_SIZE": "2"}
    done = _pods([{**common, "RANK": "0", "HOSTNAME": "old-master-0"}, {**common, "RANK": "1",
                                                                        "HOSTNAME": "old-worker-0"}])
    for pod in done:
        assert pod.returncode == 0, pod.stderr[-3000:]
    (run,) = search_runs(tracking_uri)
    assert run.info.status == "FINISHED" and run.data.tags["kubernetes.job_name"] == "old"
    (three,) = _pods([{**common, "WORLD_SIZE": "3", "RANK": "0"}])
    assert three.returncode == 2
    assert "accelbench: error: topology 2x1 needs 2 node(s), and the kubernetes job has 3" in three.stderr
    (wrong_procs,) = _pods([{**common, "PET_NNODES": "2", "PET_NODE_RANK": "0", "PET_NPROC_PER_NODE": "4"}])
    assert wrong_procs.returncode == 2 and "declares 4" in wrong_procs.stderr
    assert len(search_runs(tracking_uri)) == 1  # no run for either


# The PyTorchJob's fields (kubeflow/training-operator pkg/apis/kubeflow.org/v1: PyTorchJob, PyTorchJobSpec,
# ReplicaSpec) and the pod fields the manifest uses.
PYTORCHJOB_SPEC_FIELDS = {"runPolicy", "elasticPolicy", "pytorchReplicaSpecs", "nprocPerNode"}
REPLICA_SPEC_FIELDS = {"replicas", "template", "restartPolicy"}
REPLICA_TYPES = {"Master", "Worker"}


def test_the_pytorchjob_manifest_loads_back_as_one_pod_per_node() -> None:
    result = invoke("submit", "--scheduler", "kubernetes", "--dry-run", "--image", "registry.local/accelbench:1",
                    "--namespace", "bench", "run", "--case", "faster_rcnn", "--vendor", "nvidia_a100",
                    "--topology", "2x8", "--data-root", "/data/coco")
    assert result.exit_code == 0, result.stderr[-3000:]
    manifest = yaml.safe_load(result.stdout)
    assert (manifest["apiVersion"], manifest["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    assert manifest["metadata"]["namespace"] == "bench"
    spec = manifest["spec"]
    assert set(spec) <= PYTORCHJOB_SPEC_FIELDS and spec["nprocPerNode"] == "8"
    replicas = spec["pytorchReplicaSpecs"]
    assert set(replicas) <= REPLICA_TYPES
    assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 1  # 2 nodes, one pod each
    for replica in replicas.values():
        assert set(replica) <= REPLICA_SPEC_FIELDS
        pod = replica["template"]["spec"]
        (container,) = pod["containers"]
        assert container["name"] == "pytorch"  # the operator finds its container by this name
        assert container["image"] == "registry.local/accelbench:1"
        assert container["command"][:2] == ["accelbench", "run"] and "--node-rank" not in container["command"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
        env = {e["name"]: e for e in container["env"]}
        assert env["ACCELBENCH_K8S_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
        assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
        assert {"name": "dshm", "emptyDir": {"medium": "Memory"}} in pod["volumes"]
    other = invoke("submit", "--scheduler", "kubernetes", "--dry-run", "--image", "x", "run", "--case",
                   "retinanet", "--vendor", "kunlunxin_r300", "--topology", "1x8", "--data-root", "/data/coco")
    assert other.exit_code == 0, other.stderr[-3000:]
    pod = yaml.safe_load(other.stdout)["spec"]["pytorchReplicaSpecs"]
    assert set(pod) == {"Master"}
    assert pod["Master"]["template"]["spec"]["containers"][0]["resources"]["limits"]["kunlunxin.com/xpu"] == "8"
