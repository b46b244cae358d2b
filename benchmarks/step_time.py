"""CPU seconds per training step of one model (a release member: the first), on one thread.

Usage (a script, not a test):

    python benchmarks/step_time.py --preset release-beauty --dataset Beauty \
        --data-dir ../shared/data [--steps 4] [--set release.view_passes=1]

Runs the first ``--steps + 1`` batches of a fixed shuffle of the training rows (built as
`adarec.train.train_epoch` builds them: trimmed, with the data path's negatives) and prints
the process time of each step after the first. Process time on one thread counts the work a
step does, not the wall clock, so it stays comparable on a machine shared with other jobs
(the wall clock there mostly measures the queue).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from _setup import add_run_args, prepare_run  # benchmarks/_setup.py, beside this script

from adarec.data.negatives import sample_negatives
from adarec.errors import AdarecError
from adarec.setup import make_optimizer
from adarec.train import make_batch, negatives_high


def run(args: argparse.Namespace) -> list[float]:
    torch.set_num_threads(1)
    config, device, _, splits, info, model = prepare_run(args)
    t = config.train
    member = model.stages()[0].model.train()  # a release member is a step
    optimizer = make_optimizer(member, t, device)
    train = splits.train.to(device)
    high = negatives_high(config, info)
    g = torch.Generator(device=device).manual_seed(t.seed)
    negatives = None if high is None else sample_negatives(train.seen, train.users,
                                                           train.targets, high, g)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(t.seed))
    seconds = []
    for i in range(args.steps + 1):
        rows = order[i * t.batch_size : (i + 1) * t.batch_size].to(device)
        start = time.process_time()
        out = member.loss(make_batch(train, rows, negatives, trim=device.type == "cpu"))
        optimizer.zero_grad(set_to_none=True)
        out.total.backward()
        optimizer.step()
        if i:
            seconds.append(time.process_time() - start)
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(p)
    p.add_argument("--steps", type=int, default=4, help="timed steps (default 4)")
    args = p.parse_args(argv)
    try:
        seconds = run(args)
    except AdarecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.preset} {' '.join(args.overrides)}: CPU s per step "
          f"{[round(s, 2) for s in seconds]}, median {statistics.median(seconds):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
