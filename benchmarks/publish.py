"""Run every benchmark on this machine and regenerate the figures table in benchmarks/README.md.

Each script runs as its own process with `--json`; its record (figure, target, verdict, machine, date, command,
details) replaces this machine's previous record of the same benchmark in benchmarks/results.json, so figures from
other machines (a GPU session's) stay in the table until that machine runs again. On a machine without a GPU the
training benchmarks use their `--quick` CPU settings; with one they use the published 1x1 setting (bs 16).

    .venv/bin/python benchmarks/publish.py                 # everything (about 15 minutes on a 2-core CPU)
    .venv/bin/python benchmarks/publish.py --only overhead # one benchmark
    .venv/bin/python benchmarks/publish.py --table-only    # rewrite the table from results.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"
README = HERE / "README.md"
START, END = "<!-- figures:start (benchmarks/publish.py writes this table) -->", "<!-- figures:end -->"
GPU_VENDORS = {"H100": "nvidia_h100", "A100": "nvidia_a100"}


def commands(gpu_name: str | None) -> dict[str, list[str]]:
    """Benchmark name -> script arguments for this machine."""
    if gpu_name is None:
        train = {"overhead": ["--quick", "--rounds", "3", "--steps", "20"],
                 "data_pipeline": ["--quick"],
                 "precision_profile": ["--quick", "--steps", "6"]}
    else:
        vendor = next((v for k, v in GPU_VENDORS.items() if k in gpu_name), "nvidia_h100")
        gpu = ["--vendor", vendor, "--set", "hp.bs=16"]
        train = {"overhead": [*gpu, "--rounds", "3", "--steps", "30"],
                 "data_pipeline": [*gpu, "--set", "data.workers=8"],
                 "precision_profile": [*gpu, "--steps", "30"]}
    return {**train, "eval_speed": ["--images", "5000"], "results_query": ["--runs", "1000"], "data_index": []}


def load(results: Path) -> list[dict]:
    return json.loads(results.read_text(encoding="utf-8")) if results.is_file() else []


def table(records: list[dict]) -> str:
    lines = ["| benchmark | figure | target | verdict | machine | date | command |", "|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (r["machine"], r["benchmark"])):
        target = "-" if r["target"] is None else f"{r['comparison']} {r['target']:g}{r['unit']}"
        lines.append(f"| {r['benchmark']} | {r['figure']:.3f}{r['unit']} | {target} | {r['verdict']} | "
                     f"{r['machine']} | {r['date']} | `{r['command']}` |")
    return "\n".join(lines)


def write_readme(readme: Path, records: list[dict]) -> None:
    """Replace what lies between the two markers; the rest of the file is left as it is."""
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"publish: {readme} has no figures markers ({START} ... {END})")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{table(records)}\n{END}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], help="run only this benchmark (repeatable)")
    parser.add_argument("--table-only", action="store_true", help="do not run anything; rewrite the table")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the records file")
    parser.add_argument("--readme", type=Path, default=README, help="the file whose table is rewritten")
    args = parser.parse_args()
    records = load(args.results)
    if not args.table_only:
        import torch

        gpu_name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        for name, arguments in commands(gpu_name).items():
            if args.only and name not in args.only:
                continue
            with tempfile.TemporaryDirectory() as folder:
                out = Path(folder) / "record.json"
                shown = ["python", f"benchmarks/{name}.py", *arguments]
                print("$ " + " ".join(shown), flush=True)
                command = [sys.executable, str(HERE / f"{name}.py"), *arguments, "--json", str(out)]
                if subprocess.run(command, check=False).returncode != 0 or not out.is_file():
                    raise SystemExit(f"publish: {name} failed; the README table is unchanged "
                                     f"(figures of the benchmarks before it are in {args.results})")
                written = json.loads(out.read_text(encoding="utf-8"))
            for record in written if isinstance(written, list) else [written]:
                record["command"] = " ".join(shown)
                records = [r for r in records if (r["benchmark"], r["machine"]) != (record["benchmark"],
                                                                                     record["machine"])]
                records.append(record)
            args.results.write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")
    write_readme(args.readme, records)
    print(f"wrote {args.readme} ({len(records)} figures)")


if __name__ == "__main__":
    main()
