"""Check that `train.compile` computes what eager mode computes, and time both.

Usage (a script, not a test: compilation takes a minute or more):

    python benchmarks/check_compile.py --preset release-beauty --dataset synthetic \
        --set model.hidden_size=16 [--device cuda] [--mode reduce-overhead] [--steps 5]

Builds the preset's model as `adarec train` does (one member of the release), draws one
training batch, and computes the loss parts once in eager mode and once through
`adarec.train.loss_function` with ``compile=True``, from the same seed, with Inductor's
random numbers taken from eager's generator (``fallback_random``), so the two must agree to
rounding; a compilation that fails (and would fall back to eager) fails the check. Before
that, times ``--steps`` training steps (forward, backward, optimizer) each way, the compiled
ones after the compiling step. On the CPU the batch runs whole (the GPU's code
path); compiled length groups would recompile for every new shape. Exits 1 if a loss part
differs by more than ``--rtol``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable

import torch
import torch._inductor.config as inductor_config
from _setup import add_run_args, prepare_run  # benchmarks/_setup.py, beside this script

from adarec.errors import AdarecError
from adarec.model.encoder import set_length_buckets
from adarec.model.sasrec import Batch
from adarec.train import loss_function, make_optimizer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(p)
    p.add_argument("--mode", default="default",
                   choices=("default", "reduce-overhead", "max-autotune",
                            "max-autotune-no-cudagraphs"),
                   help="torch.compile mode (default: default)")
    p.add_argument("--steps", type=int, default=5, help="timed steps each way (default 5)")
    p.add_argument("--rtol", type=float, default=1e-3,
                   help="largest relative difference of a loss part allowed (default 1e-3)")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error("--steps must be >= 1")
    return args


def run(args: argparse.Namespace) -> bool:
    config, device, autocast, splits, _, model = prepare_run(args)
    t = config.train
    set_length_buckets(model, 1)  # whole batches: one shape, one graph
    member = next(iter(getattr(model, "members", [model])))
    train = splits.train.to(device)
    member.before_training(train.inputs[:2048], t.seed)
    member.train()
    optimizer = make_optimizer(member, t, device)
    batch = Batch(train.inputs[: t.batch_size], train.targets[: t.batch_size])

    def autocast_on():
        return torch.autocast(device.type, dtype=autocast or torch.float32,
                              enabled=autocast is not None)

    def parts(fn) -> dict[str, float]:
        torch.manual_seed(t.seed)
        with autocast_on():
            return {k: float(v) for k, v in fn(batch).parts.items()}

    def seconds_per_step(fn) -> float:
        def step() -> None:
            with autocast_on():
                out = fn(batch)
            optimizer.zero_grad(set_to_none=True)
            out.total.backward()
            optimizer.step()

        step()  # compiles forward and backward
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (time.perf_counter() - start) / args.steps

    def compiled() -> Callable:
        torch._dynamo.reset()
        return loss_function(member, compile=True, mode=args.mode)

    with warnings.catch_warnings():
        # `loss_function` falls back to eager with this warning: here that is a failure.
        warnings.filterwarnings("error", message="torch.compile failed")
        eager_s = seconds_per_step(member.loss)
        start = time.perf_counter()
        compiled_s = seconds_per_step(compiled())
        total_s = time.perf_counter() - start
        inductor_config.fallback_random = True  # the compiled graph draws eager's numbers
        eager, traced = parts(member.loss), parts(compiled())
    print(f"{args.preset} on {device}, mode {args.mode}: compiling and timing {total_s:.1f} s; "
          f"training step eager {eager_s * 1000:.1f} ms, compiled {compiled_s * 1000:.1f} ms "
          f"({eager_s / compiled_s:.2f}x)")
    print(f"{'loss part':<14}{'eager':>14}{'compiled':>14}{'rel. diff':>12}")
    ok = True
    for name, value in eager.items():
        diff = abs(traced[name] - value) / max(abs(value), 1e-12)
        ok &= diff <= args.rtol
        print(f"{name:<14}{value:>14.6g}{traced[name]:>14.6g}{diff:>12.2e}")
    print("loss parts agree" if ok else f"loss parts DIFFER by more than {args.rtol}")
    return ok


def main(argv: list[str] | None = None) -> int:
    try:
        return 0 if run(parse_args(argv)) else 1
    except AdarecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
