"""How long `suite.results` takes to query and compare a store of many runs (target: 1,000 runs in under 5 s).

Fills a fresh SQLite store with the published rows plus N measured runs shaped like real ones (the resolved config's
~60 params, ~45 tags, ~20 summary metrics and a per-step loss history each), then times `results.runs()` and
`results.compare()` as a user calls them. Prints one line per timing and the target line last.

    .venv/bin/python benchmarks/results_query.py              # 1,000 runs
    .venv/bin/python benchmarks/results_query.py --runs 100   # quicker
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

from common import finish

CASES = ("faster_rcnn", "retinanet", "mask_rcnn")
VENDORS = {"nvidia_a100": 45.0, "nvidia_h100": 48.0, "metax_c500": 40.0, "kunlunxin_r300": 30.0}
TOPOLOGIES = ("1x1", "1x8", "2x8")
TARGET_S = 5.0


def fill(tracking_uri: str, count: int, seed: int = 0) -> None:
    import mlflow
    from mlflow.entities import Metric, Param, RunTag

    from suite import names
    from suite.config import flatten, resolve
    from suite.results.published import import_published, load_published
    from suite.tracking.client import ensure_experiment

    client = mlflow.MlflowClient(tracking_uri)
    import_published(load_published(), tracking_uri=tracking_uri)
    experiment_id = ensure_experiment("accelbench", client)
    rng = random.Random(seed)
    params_by_case = {case: {k: str(v)[:500] for k, v in flatten(resolve(case, "cpu", "1x1").config.model_dump())
                             .items()} for case in CASES}
    env = {f"env.{k}": "x" * 12 for k in ("os", "os_version", "kernel", "python", "torch", "torchvision",
                                          "mlflow", "cpu_model", "cpu_count", "host_memory_gib", "hostname",
                                          "accelerator_model", "accelerator_count", "accelerator_memory_gib",
                                          "driver", "cuda", "numpy", "pycocotools")}
    now = int(time.time() * 1000)
    for index in range(count):
        case, vendor, topology = rng.choice(CASES), rng.choice(list(VENDORS)), rng.choice(TOPOLOGIES)
        nodes, per_node = (int(x) for x in topology.split("x"))
        p_core = VENDORS[vendor] * nodes * per_node * rng.uniform(0.85, 1.0)
        tags = {names.TAG_CASE: case, names.TAG_VENDOR: vendor, names.TAG_ACCELERATOR: vendor,
                names.TAG_TOPOLOGY: topology, names.TAG_NNODES: str(nodes), names.TAG_NPROC_PER_NODE: str(per_node),
                names.TAG_WORLD_SIZE: str(nodes * per_node), names.TAG_PRECISION: "tf32",
                names.TAG_FIX_HP: "bs=16,lr=0.16", names.TAG_MODE: "throughput",
                names.TAG_SOURCE: names.SOURCE_MEASURED, names.TAG_ROUND: str(index % 3),
                names.TAG_STATUS: "FINISHED", names.TAG_CONFIG_HASH: f"{index:012x}", **env}
        params = {**params_by_case[case], "bs": "16", "lr": "0.16", "global_bs": str(16 * nodes * per_node),
                  "precision": "tf32", "mode": "throughput"}
        metrics = {"e2e_time": 120.0, "p_whole": p_core * 0.9, "p_train": p_core * 0.95, "p_core": p_core,
                   "mem": 30.0, "mem_total": 80.0, "images": 480.0, "steps": 35.0, "init_time": 20.0,
                   "train_time": 10.0, "core_time": 9.0, "eval_time": 0.0, "train_loop_time": 10.0}
        run = client.create_run(experiment_id, run_name=f"{case}/{vendor}/{topology}", start_time=now + index)
        client.log_batch(run.info.run_id,
                         metrics=[Metric(k, v, now, 0) for k, v in metrics.items()]
                         + [Metric("loss", 2.0 / (step + 1), now, step) for step in range(1, 21)],
                         params=[Param(k, v) for k, v in params.items()],
                         tags=[RunTag(k, v) for k, v in tags.items()])
        client.set_terminated(run.info.run_id, "FINISHED")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="measured runs to create")
    parser.add_argument("--store", type=Path, default=None, help="SQLite file to use (default: a temp file)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="accelbench-query-"))
    store = args.store or folder / "mlflow.db"
    uri = f"sqlite:///{store}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

    began = time.perf_counter()
    fill(uri, args.runs)
    print(f"filled {store} with {args.runs} measured runs + the published rows in "
          f"{time.perf_counter() - began:.1f} s")

    from suite import results

    began = time.perf_counter()
    everything = results.runs()
    query_s = time.perf_counter() - began
    print(f"results.runs(): {len(everything)} runs in {query_s:.2f} s")

    began = time.perf_counter()
    one_case = results.runs(case="faster_rcnn")
    print(f"results.runs(case='faster_rcnn'): {len(one_case)} runs in {time.perf_counter() - began:.2f} s")

    began = time.perf_counter()
    comparison = results.compare()
    both_s = time.perf_counter() - began
    print(f"results.compare(): {len(comparison.runs)} runs -> {len(comparison.table)} table rows, "
          f"{len(comparison.scaling)} scaling rows in {both_s:.2f} s (query included)")
    finish(f"results query+compare of {args.runs} measured runs", figure=both_s, unit=" s", target=TARGET_S,
           higher_is_better=False, details={"runs": len(comparison.runs), "query_s": query_s, "compare_s": both_s},
           json_path=args.json)


if __name__ == "__main__":
    main()
