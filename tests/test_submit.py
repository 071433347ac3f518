"""What `accelbench submit --dry-run` asks a SLURM cluster for, from flags and a config layer's `cluster:` section
(in-process; the SLURM tests submit real jobs)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import invoke


def test_the_sbatch_script_takes_the_cluster_section_and_flags_win(tmp_path: Path) -> None:
    layer = tmp_path / "cluster.yaml"
    layer.write_text("cluster:\n  partition: a100\n  account: perf\n  qos: bench\n  time: '6:00:00'\n"
                     "  sbatch: ['--exclusive']\n  warning: USR2@300\n", encoding="utf-8")
    result = invoke("submit", "--dry-run", "--partition", "a100-long", "--reservation", "vendor-week",
                    "--log-dir", str(tmp_path / "jobs"), "run", "--case", "faster_rcnn", "--vendor", "nvidia_a100",
                    "--topology", "2x8", "--data-root", "/data/coco2017", "--config", str(layer))
    assert result.exit_code == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "#!/bin/bash"
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gres=gpu:8",
                 "#SBATCH --cpus-per-task=40",  # 8 devices x (1 process + 4 loader workers)
                 "#SBATCH --partition=a100-long", "#SBATCH --account=perf", "#SBATCH --qos=bench",
                 "#SBATCH --reservation=vendor-week", "#SBATCH --time=6:00:00", "#SBATCH --signal=USR2@300",
                 "#SBATCH --exclusive", f"#SBATCH --output={tmp_path / 'jobs'}/accelbench-run-faster_rcnn-"
                 "nvidia_a100-2x8-%j.log"):
        assert line in lines, (line, result.stdout)
    (step,) = [line for line in lines if line.startswith("srun ")]
    assert step.startswith("srun --ntasks-per-node=1 --kill-on-bad-exit=1 ") and "--node-rank" not in step
    assert "-m suite run --case faster_rcnn --vendor nvidia_a100 --topology 2x8" in step
    assert any(line.startswith("export MLFLOW_TRACKING_URI=sqlite:////") for line in lines)  # absolute


def test_a_bad_cluster_setting_is_one_line() -> None:
    result = invoke("submit", "--dry-run", "--signal", "KILL@10", "run", "--case", "retinanet", "--vendor", "cpu",
                    "--topology", "1x1", "--synthetic")
    assert result.exit_code == 2
    assert result.stderr.startswith("accelbench: error:") and "warning" in result.stderr, result.stderr
