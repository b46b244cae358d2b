"""Profile a few training steps of a preset: where the time goes, per operator.

Usage (a script, not a test):

    python benchmarks/profile_step.py --preset adarec-beauty --dataset Beauty \
        --data-dir ../shared/data [--device cuda] [--steps 5] [--rows 20]

Runs one untimed step, then ``--steps`` steps of random training batches (the same calls as
`adarec.train.train_epoch`: trimmed batches on the CPU, autocast on a GPU) under
`torch.profiler`, and prints the operators that took the most time (self time; CUDA time
on a GPU) and the number of operator calls, computing operator calls and CUDA kernel launches
per step: on a GPU a step that launches thousands of small kernels is bound by launches, not
arithmetic. ``--set runtime.length_buckets=1`` runs the CPU through the GPU's code path (whole
batches), to count a GPU step's operators without a GPU.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from _setup import add_run_args, prepare_run  # benchmarks/_setup.py, beside this script
from torch.profiler import ProfilerActivity, profile

from adarec.data.negatives import sample_negatives
from adarec.errors import AdarecError
from adarec.setup import make_optimizer
from adarec.train import make_batch, negatives_high


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(p)
    p.add_argument("--steps", type=int, default=5, help="profiled steps (default 5)")
    p.add_argument("--rows", type=int, default=25, help="operators to list (default 25)")
    args = p.parse_args(argv)
    if args.steps < 1 or args.rows < 1:
        p.error("--steps and --rows must be >= 1")
    return args


def run(args: argparse.Namespace) -> None:
    config, device, autocast, splits, info, model = prepare_run(args)
    t = config.train
    member = model.stages()[0].model  # one release member is a step
    train = splits.train.to(device)
    member.before_training(train.inputs[:2048], t.seed)
    optimizer = make_optimizer(member, t, device)
    member.train()
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(t.seed))
    high = negatives_high(config, info)  # the release draws its negatives on the data side
    negatives = (None if high is None else sample_negatives(
        train.seen, train.users, train.targets, high,
        torch.Generator(device=device).manual_seed(t.seed)))

    def step(i: int) -> None:
        # Full batches, wrapping around the shuffled rows on small data.
        rows = order.roll(-(i * t.batch_size) % len(order))[: t.batch_size].to(device)
        batch = make_batch(train, rows, negatives, trim=device.type == "cpu")
        with torch.autocast(device.type, dtype=autocast or torch.float32,
                            enabled=autocast is not None):
            out = member.loss(batch)
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
          f"{ops / args.steps:,.0f} aten operator calls per step (nested calls included), "
          f"{compute_ops(prof) / args.steps:,.0f} of them computing")
    if device.type == "cuda":
        kernels = [e for e in prof.events() if "CUDA" in str(e.device_type)]
        busy = sum(e.device_time for e in kernels) / 1000 / args.steps  # us -> ms
        print(f"{len(kernels) / args.steps:,.0f} CUDA kernels per step, "
              f"{busy:.1f} ms of kernel time per step")


# Operators that only make views or allocate: no kernel of their own.
NO_KERNEL = frozenset(f"aten::{name}" for name in (
    "alias as_strided chunk contiguous detach empty empty_like empty_strided expand expand_as "
    "lift_fresh narrow permute reshape _reshape_alias resolve_conj resolve_neg select slice "
    "split squeeze t transpose unbind unsqueeze _unsafe_view view view_as").split())


def compute_ops(prof: profile) -> int:
    """Innermost aten operators of the loss and its backward that compute (no aten operator
    inside them, not a view or an allocation): on a GPU, roughly one kernel launch each; on
    the CPU, a count to compare two versions of the code by (a CPU GRU adds its per-step
    operators, where a GPU runs a few cuDNN kernels). The optimizer's step is left out (on a
    GPU it is fused: a few kernels)."""

    def in_optimizer(e) -> bool:
        while e is not None:
            if e.name.startswith("Optimizer.step"):
                return True
            e = e.cpu_parent
        return False

    return sum(
        1 for e in prof.events()
        if e.name.startswith("aten::") and e.name not in NO_KERNEL
        and not any(c.name.startswith("aten::") for c in e.cpu_children)
        and not in_optimizer(e)
    )


def main(argv: list[str] | None = None) -> int:
    try:
        run(parse_args(argv))
    except AdarecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
