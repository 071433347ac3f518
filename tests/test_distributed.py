"""Real multi-process runs on gloo through torchrun: 1x2, 2x1 as two loopback nodes, and a rank killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from cases.detection.data import load_coco
from cases.detection.evaluator import CocoEvaluator
from cases.detection.synthetic import SyntheticSpec, ensure_dataset
from suite import names
from suite.results.scaling import efficiencies, implausible
from tests.helpers import LIGHT, REPO, free_port, invoke, search_runs

KILL_TIMEOUT_S = 60


def _download(tracking_uri: str, run_id: str, path: str) -> Path:
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, tracking_uri=tracking_uri))


def _check_distributed_eval(run, tracking_uri: str, cache_dir: Path, val_images: int) -> None:
    """Every val image evaluated once, and the recorded stats equal one process evaluating the merged predictions."""
    predictions = json.loads(_download(tracking_uri, run.info.run_id, "predictions/epoch2.json").read_text())
    history = json.loads(_download(tracking_uri, run.info.run_id, "eval.json").read_text())[-1]
    assert history["epoch"] == 2 and history["images_evaluated"] == val_images
    # an image evaluated on both ranks would show up as identical predictions twice
    assert len({json.dumps(p, sort_keys=True) for p in predictions}) == len(predictions)
    root = ensure_dataset(SyntheticSpec(train=8, val=val_images, width=128, height=128), cache_dir / "synthetic")
    coco = load_coco(root / "annotations" / "instances_val2017.json")
    single = CocoEvaluator(coco, ["bbox"])
    single.add(coco.getImgIds(), predictions)
    assert single.evaluate()["bbox"] == pytest.approx(history["stats"]["bbox"], abs=1e-12)
    assert run.data.metrics[names.MAP] == pytest.approx(history["stats"]["bbox"][0], abs=1e-12)


def test_1x2_run_sums_images_and_evaluates_each_image_once(tracking_uri: str, cache_dir: Path) -> None:
    # 7 val images over 2 ranks: the distributed sampler repeats one image to even the shards.
    # The launching `accelbench run` in this process; torchrun and both ranks are processes of their own.
    result = invoke("run", "--case", "faster_rcnn", "--vendor", "cpu", "--topology", "1x2", "--synthetic",
                    "--master-port", str(free_port()), *LIGHT, "--set", "data.synthetic.val=7",
                    "--set", "train.max_steps=3", "--set", "hp.epochs=2", "--set", "eval.save_predictions=true")
    assert result.exit_code == 0, result.stderr[-4000:]
    (run,) = search_runs(tracking_uri)
    metrics, tags = run.data.metrics, run.data.tags
    assert run.info.status == "FINISHED"
    assert tags[names.TAG_WORLD_SIZE] == "2" and tags[names.TAG_NPROC_PER_NODE] == "2"
    assert run.data.params["dist.master_addr"] == "127.0.0.1" and run.data.params["global_bs"] == "4"
    assert metrics[names.IMAGES] == 2 * 3 * 2  # ranks x steps x per-device batch
    assert metrics[names.P_WHOLE] <= metrics[names.P_TRAIN] <= metrics[names.P_CORE]

    _check_distributed_eval(run, tracking_uri, cache_dir, val_images=7)
    artifacts = {a.path for a in mlflow.MlflowClient(tracking_uri).list_artifacts(run.info.run_id, "rank_logs")}
    assert artifacts == {"rank_logs/rank1.log"}


def test_2x1_two_nodes_on_loopback(tracking_uri: str, cache_dir: Path) -> None:
    port = str(free_port())
    common = ["run", "--case", "faster_rcnn", "--vendor", "cpu", "--topology", "2x1", "--synthetic",
              "--master-addr", "127.0.0.1", "--master-port", port, *LIGHT, "--set", "train.max_steps=3",
              "--set", "hp.epochs=2", "--set", "eval.save_predictions=true"]
    node1 = subprocess.Popen([sys.executable, "-m", "suite", *common, "--node-rank", "1"], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    node0 = invoke(*common, "--node-rank", "0", console=True)  # node 0's launcher in this process, node 1's not
    _, node1_err = node1.communicate(timeout=300)
    assert node0.exit_code == 0, node0.stderr[-4000:]
    assert node1.returncode == 0, node1_err[-4000:]
    # Log lines say which node and rank (or node launcher) they come from; only rank 0 shows progress.
    assert " node1/launcher INFO suite.launch.launcher: node 1: " in node1_err
    assert " node1/rank1 INFO suite.engine.trainer: epoch 1 eval: " in node1_err and "suite.progress" not in node1_err
    assert " node0/launcher INFO suite.launch.launcher: node 0: " in node0.stderr
    assert " node0/rank0 INFO suite.progress: epoch 1: 1/" in node0.stderr
    (run,) = search_runs(tracking_uri)  # only global rank 0 records
    assert run.info.status == "FINISHED"
    assert run.data.tags[names.TAG_NNODES] == "2" and run.data.tags[names.TAG_WORLD_SIZE] == "2"
    assert run.data.metrics[names.IMAGES] == 2 * 3 * 2
    _check_distributed_eval(run, tracking_uri, cache_dir, val_images=4)
    # one environment record per node, merged on rank 0
    record = json.loads(Path(mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path=names.ARTIFACT_ENVIRONMENT, tracking_uri=tracking_uri)).read_text())
    assert len(record["nodes"]) == 2 and record["mlperf_system_description"]["number_of_nodes"] == "2"
    assert record["fields"]["hostname"] == record["nodes"][1]["hostname"]  # both loopback nodes agree


def _rank_pid(rank: int, marker: str) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"worker" in cmdline and f"RANK={rank}".encode() in environ and marker.encode() in b"\0".join(environ):
            return int(entry.name)
    return None


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker through /proc")
def test_killing_a_rank_ends_the_job_and_fails_the_run(tracking_uri: str) -> None:
    job = subprocess.Popen([sys.executable, "-m", "suite", "run", "--case", "faster_rcnn", "--vendor", "cpu",
                            "--topology", "1x2", "--synthetic", "--master-port", str(free_port()), *LIGHT,
                            "--set", "train.max_steps=500", "--set", "hp.epochs=100"],
                           cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert job.stderr is not None
        seen = []
        for line in job.stderr:  # wait until rank 1 is training (rank 0 cannot finish step 2 without it)
            seen.append(line)
            if "rank0 INFO suite.progress: epoch 1: 2/" in line:
                break
        pid = _rank_pid(1, tracking_uri)
        assert pid is not None, "".join(seen[-20:])
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        job.communicate(timeout=KILL_TIMEOUT_S)
        assert time.monotonic() - killed_at < KILL_TIMEOUT_S
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode != 0
    (run,) = search_runs(tracking_uri)
    assert run.info.status == "FAILED"
    assert run.data.tags[names.TAG_STATUS] == "FAILED"
    failure = run.data.tags[names.TAG_FAILURE]
    assert failure.startswith("rank 1 ") and "SIGKILL" in failure
    assert run.data.metrics[names.STEPS] >= 2  # what rank 0 measured before the job ended is kept


def test_root_cause_prefers_the_killed_rank_over_follow_on_errors() -> None:
    """torchrun's summary from a real run where rank 1 was SIGKILLed: rank 0 then lost its peer and was stopped."""
    from suite.launch.launcher import failure_entries, root_cause

    lines = (Path(__file__).parent / "data" / "torchrun_rank_killed.txt").read_text().splitlines()
    entries = failure_entries(lines)
    assert {(e.rank.split()[0], e.stopped_by_torchrun) for e in entries} == {("0", True), ("1", False)}
    assert root_cause(lines).startswith("rank 1 (local_rank: 1) on localhost exited with code -9")
    assert root_cause(["nothing useful"]) is None


def test_matrix_runs_rounds_under_one_parent_with_scaling(tracking_uri: str) -> None:
    # retinanet members fail (the light settings' MobileNet backbone is a Faster R-CNN one): the matrix reports
    # them and goes on.
    # The matrix in this process; each member is an `accelbench run` process of its own, as always.
    result = invoke("matrix", "--vendor", "cpu", "--cases", "faster_rcnn,retinanet", "--topologies", "1x1,1x2,2x1",
                    "--repeat", "2", "--synthetic", *LIGHT,
                    # throughput mode: scaling needs only the timed steps, and no evaluation keeps it quick
                    "--mode", "throughput", "--set", "train.warmup_steps=0", "--set", "train.steps=2")
    assert result.exit_code == 1
    assert "skipped: 2x1 needs 2 nodes" in result.stdout
    assert "4 of 8 matrix members did not finish" in result.stderr
    runs = search_runs(tracking_uri)
    (parent,) = [r for r in runs if r.data.tags.get("bench.kind") == "matrix"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted((r.data.tags[names.TAG_TOPOLOGY], r.data.tags[names.TAG_ROUND]) for r in children) == [
        ("1x1", "0"), ("1x1", "1"), ("1x2", "0"), ("1x2", "1")]
    assert all(r.info.status == "FINISHED" and r.data.tags[names.TAG_CASE] == "faster_rcnn" for r in children)
    assert "retinanet" in result.stdout and "backbone 'mobilenet_v3_large' is not available" in result.stdout
    p_core = {t: sorted(r.data.metrics[names.P_CORE] for r in children if r.data.tags[names.TAG_TOPOLOGY] == t)
              for t in ("1x1", "1x2")}
    expected = (sum(p_core["1x2"]) / 2) / (2 * sum(p_core["1x1"]) / 2)  # medians of two rounds are their means
    assert parent.data.metrics["faster_rcnn.scaling_1x2.p_core"] == pytest.approx(expected)
    # what makes a figure implausible is said on the parent and beside the figure (often, on 2 loaded cores)
    flags = implausible(p_core, efficiencies(p_core)).get("1x2")
    tag = parent.data.tags[names.TAG_IMPLAUSIBLE]
    line = next(line for line in result.stdout.splitlines() if line.startswith("faster_rcnn.scaling_1x2.p_core:"))
    assert (flags is None) == (tag == "none" or "scaling_1x2.p_core:" not in tag) == ("IMPLAUSIBLE" not in line)
    assert parent.info.status == "FINISHED"
