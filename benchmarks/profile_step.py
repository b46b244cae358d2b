"""Profile a few training steps of a preset: where the time goes, per operator.

Usage (a script, not a test):

    python benchmarks/profile_step.py --preset adarec-beauty --dataset Beauty \
        --data-dir ../shared/data [--device cuda] [--steps 5] [--rows 20]

Runs one untimed step, then ``--steps`` steps of random training batches (the same calls as
`adarec.train.train_epoch`: trimmed batches on the CPU, autocast on a GPU) under
`torch.profiler`, and prints the operators that took the most time (self time; CUDA time
on a GPU) and the number of operator calls and CUDA kernel launches per step: on a GPU a step
that launches thousands of small kernels is bound by launches, not arithmetic.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

from adarec.config import load_config
from adarec.data.splits import trim_left
from adarec.errors import AdarecError
from adarec.model.build import build_model
from adarec.model.encoder import set_length_buckets
from adarec.model.sasrec import Batch
from adarec.train import (
    autocast_dtype,
    make_optimizer,
    prepare_data,
    resolve_device,
    seed_everything,
    set_matmul_precision,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", required=True, help="preset name (see `adarec presets`)")
    p.add_argument("--dataset", help="benchmark name, 'synthetic' or 'file'")
    p.add_argument("--data-dir", help="directory holding the benchmark files")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="default: the preset's train.device (auto = cuda when available)")
    p.add_argument("--steps", type=int, default=5, help="profiled steps (default 5)")
    p.add_argument("--rows", type=int, default=25, help="operators to list (default 25)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override section.key=value (repeatable)")
    args = p.parse_args(argv)
    if args.steps < 1 or args.rows < 1:
        p.error("--steps and --rows must be >= 1")
    return args


def run(args: argparse.Namespace) -> None:
    overrides = list(args.overrides)
    for key, value in (("data.dataset", args.dataset), ("data.data_dir", args.data_dir),
                       ("train.device", args.device)):
        if value:
            overrides.append(f"{key}={value}")
    config = load_config(args.preset, overrides=overrides)
    t = config.train
    seed_everything(t.seed)
    device = resolve_device(t.device)
    set_matmul_precision(t.precision)
    autocast = autocast_dtype(t.precision, device)
    splits, info = prepare_data(config)
    model = build_model(config, n_items=info.n_items, max_len=info.max_len).to(device)
    set_length_buckets(model, t.length_buckets)
    member = next(iter(getattr(model, "members", [model])))  # one release member is a step
    train = splits.train.to(device)
    member.before_training(train.inputs[:2048], t.seed)
    optimizer = make_optimizer(member, t, device)
    member.train()
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(t.seed))

    def step(i: int) -> None:
        # Full batches, wrapping around the shuffled rows on small data.
        rows = order.roll(-(i * t.batch_size) % len(order))[: t.batch_size].to(device)
        inputs, targets = train.inputs[rows], train.targets[rows]
        if device.type == "cpu":
            inputs, targets = trim_left(inputs, targets)
        with torch.autocast(device.type, dtype=autocast or torch.float32,
                            enabled=autocast is not None):
            out = member.loss(Batch(inputs, targets))
        optimizer.zero_grad(set_to_none=True)
        out.total.backward()
        optimizer.step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step(0)
    sync()
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for i in range(1, args.steps + 1):
            step(i)
        sync()
        seconds = (time.perf_counter() - start) / args.steps
    events = prof.key_averages()
    sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(events.table(sort_by=sort, row_limit=args.rows))
    ops = sum(e.count for e in events if e.key.startswith("aten::"))
    print(f"{args.preset} on {device}: {seconds * 1000:.1f} ms per step (profiled), "
          f"{ops / args.steps:,.0f} aten operator calls per step (nested calls included)")
    if device.type == "cuda":
        kernels = [e for e in prof.events() if "CUDA" in str(e.device_type)]
        busy = sum(e.device_time for e in kernels) / 1000 / args.steps  # us -> ms
        print(f"{len(kernels) / args.steps:,.0f} CUDA kernels per step, "
              f"{busy:.1f} ms of kernel time per step")


def main(argv: list[str] | None = None) -> int:
    try:
        run(parse_args(argv))
    except AdarecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
