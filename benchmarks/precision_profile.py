"""The fast precision profile against the reference: p_core of amp_bf16_fast vs tf32 (fp32 on a CPU), and amp_bf16.

`amp_bf16_fast` is bf16 autocast with the model in channels_last and a fused SGD step (suite/precision.py); it is
recorded as its own precision. Real throughput-mode suite runs, interleaved round by round so machine drift hits
every precision alike. Prints each run's p_core, then the median ratio amp_bf16_fast / reference last.
Target on an H100 (faster_rcnn bs 16): >= 1.35x tf32.

    .venv/bin/python benchmarks/precision_profile.py --quick                          # CPU, a few minutes
    python benchmarks/precision_profile.py --vendor nvidia_h100 --set hp.bs=16        # GPU
"""

from __future__ import annotations

import argparse

from common import add_run_arguments, finish, median, private_store, resolve_throughput, suite_run

TARGET = 1.35
FAST = "amp_bf16_fast"
QUICK = ["model.backbone=mobilenet_v3_large", "model.min_size=128", "model.max_size=128",
         "model.detector_kwargs={rpn_pre_nms_top_n_train: 300, rpn_post_nms_top_n_train: 300, "
         "box_batch_size_per_image: 32}", "hp.bs=2", "data.synthetic.train=64", "data.workers=1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per run")
    parser.add_argument("--quick", action="store_true", help="small CPU settings: " + " ".join(QUICK))
    args = parser.parse_args()
    private_store()

    import torch

    from suite import registry

    adapter = registry.adapter_class(resolve_throughput(args.case, args.vendor, []).config.accelerator.adapter)
    reference = "tf32" if "tf32" in adapter.supported_precisions else "fp32"  # a CPU has no TF32
    precisions = (reference, "amp_bf16", FAST)
    overrides = [*(QUICK if args.quick else []), f"train.steps={args.steps}", *args.overrides]
    rates: dict[str, list[float]] = {p: [] for p in precisions}
    for index in range(args.rounds):
        order = precisions if index % 2 == 0 else precisions[::-1]
        for precision in order:
            resolved = resolve_throughput(args.case, args.vendor, [*overrides, f"train.precision={precision}"])
            rates[precision].append(suite_run(resolved)["p_core"])
        print(f"round {index + 1}: " + ", ".join(f"{p} p_core {rates[p][-1]:.2f}" for p in precisions), flush=True)
    ratios = [f / r for f, r in zip(rates[FAST], rates[reference], strict=True)]
    bf16 = median([f / b for f, b in zip(rates[FAST], rates["amp_bf16"], strict=True)])
    print(f"{FAST} / amp_bf16 (channels_last + fused SGD alone): {bf16:.3f}x", flush=True)
    details = {"case": args.case, "vendor": args.vendor, "reference": reference,
               "p_core": rates, "fast_over_amp_bf16": bf16}
    on_gpu = torch.cuda.is_available()
    finish(f"precision {FAST}/{reference} p_core", figure=median(ratios), unit="x",
           target=TARGET if on_gpu else None, details=details, json_path=args.json)


if __name__ == "__main__":
    main()
