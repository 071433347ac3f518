"""What the suite costs: its trainer (tracking, timers, event log, spool on) against a bare torchvision-style loop.

Both train the same model (the case's, built from the same seed) on the same data with the same batch size, warm-up
and step count; the bare loop is torchvision's reference `train_one_epoch` reduced to what a step needs (forward,
loss.item(), backward, SGD step, warm-up lr). Rounds are interleaved, alternating which side goes first, so drift of
the machine hits both. Throughput on each side is images / wall time of the timed steps, data loading included
(the suite's p_train). Prints one line per round, then the median ratio suite/bare last. Target: >= 0.98.

    .venv/bin/python benchmarks/overhead.py --quick                                   # CPU, about 2 minutes
    python benchmarks/overhead.py --vendor nvidia_h100 --set hp.bs=16                 # GPU
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from common import add_run_arguments, finish, median, private_store, resolve_throughput, suite_run

TARGET = 0.98
QUICK = ["model.backbone=mobilenet_v3_large", "model.min_size=128", "model.max_size=128",
         "model.detector_kwargs={rpn_pre_nms_top_n_train: 300, rpn_post_nms_top_n_train: 300, "
         "box_batch_size_per_image: 32}", "hp.bs=2", "data.synthetic.train=64", "data.workers=1"]


def bare_run(resolved: Any) -> float:
    """Images/s of a bare loop over the same model, data, optimizer settings and step budget."""
    import torch
    from torch.utils.data import DataLoader

    from cases.detection.data import collate
    from suite.launch.checks import prepare

    config = resolved.config
    prepared = prepare(resolved, synthetic=True)
    adapter = prepared.adapter
    device = adapter.device(0)
    adapter.set_math_flags(config.train.precision)
    adapter.manual_seed(config.hp.seed)
    case = prepared.case  # its checked datasets and model recipe; nothing of the suite's loop
    model = case.build_model().to(device)
    case.calibrate(model, device)
    model.train()
    hp = config.hp
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=hp.warmup_factor, total_iters=hp.warmup_iters)
    loader = DataLoader(case.train_set, batch_size=hp.bs, shuffle=True, drop_last=True, collate_fn=collate,
                        num_workers=config.data.workers, pin_memory=adapter.pin_memory,
                        persistent_workers=config.data.workers > 0,
                        generator=torch.Generator().manual_seed(hp.seed))
    warmup_steps, steps = config.train.warmup_steps, config.train.steps
    step = images = 0
    began = None
    while step < warmup_steps + steps:
        for batch_images, targets in loader:
            if step == warmup_steps:
                adapter.synchronize(device)
                began = time.perf_counter()
            batch_images = [i.to(device, non_blocking=True).float().div_(255) for i in batch_images]
            targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
            with adapter.autocast(device, config.train.precision):
                loss_dict = model(batch_images, targets)
                losses = sum(loss_dict.values())
            loss_value = losses.item()  # torchvision's loop reads the loss every step, as the suite does
            assert loss_value == loss_value, "loss became nan"
            optimizer.zero_grad()
            losses.backward()
            optimizer.step()
            warmup.step()
            step += 1
            if step > warmup_steps:
                images += len(batch_images)
            if step == warmup_steps + steps:
                break
    adapter.synchronize(device)
    assert began is not None
    return images / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved suite/bare pairs")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    parser.add_argument("--quick", action="store_true", help="small CPU settings: " + " ".join(QUICK))
    args = parser.parse_args()
    private_store()
    overrides = [*(QUICK if args.quick else []), f"train.steps={args.steps}", f"train.warmup_steps={args.warmup}",
                 "tracking.log_every=1", *args.overrides]  # log every step: the suite's costliest setting
    resolved = resolve_throughput(args.case, args.vendor, overrides)
    suite_rates, bare_rates = [], []
    for index in range(args.rounds):
        order = ("suite", "bare") if index % 2 == 0 else ("bare", "suite")
        for side in order:
            if side == "suite":
                suite_rates.append(suite_run(resolved)["p_train"])
            else:
                bare_rates.append(bare_run(resolved))
        print(f"round {index + 1}: suite {suite_rates[-1]:.3f} img/s, bare {bare_rates[-1]:.3f} img/s, "
              f"ratio {suite_rates[-1] / bare_rates[-1]:.3f}", flush=True)
    ratios = [s / b for s, b in zip(suite_rates, bare_rates, strict=True)]
    details = {"case": args.case, "vendor": args.vendor, "bs": resolved.config.hp.bs, "steps": args.steps,
               "rounds": args.rounds, "suite_img_s": suite_rates, "bare_img_s": bare_rates, "ratios": ratios,
               "precision": resolved.config.train.precision}
    finish("overhead suite/bare throughput", figure=median(ratios), unit="", target=TARGET, details=details,
           json_path=args.json)


if __name__ == "__main__":
    main()
