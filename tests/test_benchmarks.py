"""The benchmark scripts run as documented: the evaluation benchmark end to end at a small size, and the table
generator rewriting only its own part of a README."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO

BENCHMARKS = REPO / "benchmarks"


def _script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCHMARKS / name), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_eval_speed_prints_its_ratio_line_last(tmp_path: Path) -> None:
    out = tmp_path / "record.json"
    result = _script("eval_speed.py", "--images", "80", "--detections", "20", "--json", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[-1].startswith("eval faster_coco_eval/pycocotools speed: ") and "target >= 8x" in lines[-1]
    record = json.loads(out.read_text())
    assert record["details"]["stats_equal"] is True and record["details"]["detections"] == 80 * 20
    assert record["figure"] > 0 and record["machine"] and record["verdict"] in ("meets", "MISSES")


def test_publish_rewrites_only_the_table(tmp_path: Path) -> None:
    records = [
        {"benchmark": "overhead suite/bare throughput", "figure": 1.004, "unit": "", "target": 0.98,
         "comparison": ">=", "verdict": "meets", "machine": "NVIDIA H100 80GB HBM3, 16 CPU cores",
         "date": "2026-11-20", "command": "python benchmarks/overhead.py --vendor nvidia_h100", "details": {}},
        {"benchmark": "eval faster_coco_eval/pycocotools speed", "figure": 9.8, "unit": "x", "target": 8.0,
         "comparison": ">=", "verdict": "meets", "machine": "AMD EPYC (2 cores), no GPU", "date": "2026-11-23",
         "command": "python benchmarks/eval_speed.py --images 5000", "details": {}},
    ]
    results = tmp_path / "results.json"
    results.write_text(json.dumps(records))
    readme = tmp_path / "README.md"
    start = "<!-- figures:start (benchmarks/publish.py writes this table) -->"
    readme.write_text(f"# Title\n\nprose\n\n{start}\nold table\n<!-- figures:end -->\n\nafter\n")
    result = _script("publish.py", "--table-only", "--results", str(results), "--readme", str(readme))
    assert result.returncode == 0, result.stderr[-3000:]
    text = readme.read_text()
    assert text.startswith("# Title\n\nprose\n\n") and text.endswith("<!-- figures:end -->\n\nafter\n")
    assert "old table" not in text
    assert "| overhead suite/bare throughput | 1.004 | >= 0.98 | meets | NVIDIA H100 80GB HBM3" in text
    assert "| eval faster_coco_eval/pycocotools speed | 9.800x | >= 8x | meets | AMD EPYC" in text


def test_data_index_prints_its_figures_against_todays_path(tmp_path: Path) -> None:
    out = tmp_path / "record.json"
    result = _script("data_index.py", "--images", "300", "--worker-images", "100", "--workdir", str(tmp_path),
                     "--json", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert any(line.startswith("today (pycocotools per rank): ") for line in lines)
    assert lines[-1].startswith("data index warm time: ") and "target <= 3 s" in lines[-1]
    records = json.loads(out.read_text())  # one record per figure, for benchmarks/publish.py
    assert [r["benchmark"] for r in records] == ["data index cold/today time", "data index rank RSS (warm)",
                                                 "data index worker growth", "data index warm time"]
    details = records[0]["details"]
    assert details["images"] == 300 and details["warm"]["worker_items"] == 100
    assert details["today"]["seconds"] > 0 and details["cold"]["seconds"] > 0
