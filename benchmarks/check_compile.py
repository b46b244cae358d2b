"""Check that `runtime.compile` computes what eager mode computes, and time both.

Usage (a script, not a test: compilation takes a minute or more):

    python benchmarks/check_compile.py --preset release-beauty --dataset synthetic \
        --set model.hidden_size=16 [--device cuda] [--mode reduce-overhead] [--steps 5]

Builds the preset's model as `adarec train` does (one member of the release), draws one
training batch, and prints how many graphs TorchDynamo makes of the loss (1: no breaks).
Computes the loss parts and gradients in eager mode and with the loss compiled by
`adarec.train.loss_function` (``compile=True``; its third call, a CUDA graph's replay) from
the same seed, with Inductor's random numbers taken from eager's generator
(``fallback_random``), so the two must agree to rounding; a compilation that fails (and
would fall back to eager) fails the check. Then times ``--steps`` training steps (forward,
backward, optimizer) each way, and says if Inductor skipped CUDA graphs. On the CPU the
batch runs whole (the GPU's code path); compiled length groups would recompile for every
new shape. Exits 1 if a loss part or the gradient differs by more than ``--rtol``
(relative).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import torch
import torch._dynamo as dynamo
import torch._inductor.config as inductor_config
from _setup import add_run_args, prepare_run  # benchmarks/_setup.py, beside this script
from torch._dynamo.utils import counters

from adarec.errors import AdarecError
from adarec.model.interface import Batch
from adarec.setup import make_optimizer
from adarec.train import DYNAMO_CONFIG, loss_function


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
    args.overrides = [*args.overrides, "runtime.length_buckets=1"]  # whole batches: one graph
    config, device, autocast, splits, _, model = prepare_run(args)
    t = config.train
    member = model.stages()[0].model
    train = splits.train.to(device)
    member.before_training(train.inputs[:2048], t.seed)
    member.train()
    optimizer = make_optimizer(member, t, device)
    batch = Batch(train.inputs[: t.batch_size], train.targets[: t.batch_size])

    def autocast_on():
        return torch.autocast(device.type, dtype=autocast or torch.float32,
                              enabled=autocast is not None)

    def outcome(fn, calls: int = 1) -> tuple[dict[str, float], torch.Tensor]:
        """Loss parts and the gradient (all parameters, flat) of the last of ``calls`` calls
        from the same seed (compiled: the third call replays a CUDA graph)."""
        for _ in range(calls):
            torch.manual_seed(t.seed)
            with autocast_on():
                out = fn(batch)
            member.zero_grad(set_to_none=True)
            out.total.backward()
        grads = [p.grad.flatten() for p in member.parameters() if p.grad is not None]
        return {k: float(v) for k, v in out.parts.items()}, torch.cat(grads).float()

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

    with dynamo.config.patch(**DYNAMO_CONFIG):  # as `loss_function` compiles
        explained = dynamo.explain(member.loss)(batch)
    dynamo.reset()  # compile afresh below, not from the explaining trace
    with warnings.catch_warnings():
        # `loss_function` falls back to eager with this warning: here that is a failure.
        warnings.filterwarnings("error", message="torch.compile failed")
        inductor_config.fallback_random = True  # the compiled graph draws eager's numbers
        fn = loss_function(member, compile=True, mode=args.mode)
        eager, eager_grad = outcome(member.loss)
        start = time.perf_counter()
        traced, traced_grad = outcome(fn, 3)
        total_s = time.perf_counter() - start
        eager_s, compiled_s = seconds_per_step(member.loss), seconds_per_step(fn)
    skips = dict(counters["inductor"].get("cudagraph_skips", {}))
    print(f"{args.preset} on {device}, mode {args.mode}: {explained.graph_count} graph(s), "
          f"{explained.graph_break_count} break(s)"
          + "".join(f"\n  break: {str(r.reason)[:150]}" for r in explained.break_reasons))
    if skips:
        print(f"CUDA graphs skipped: {skips}")
    print(f"first 3 compiled calls (compiling): {total_s:.1f} s; training step eager "
          f"{eager_s * 1000:.1f} ms, compiled {compiled_s * 1000:.1f} ms "
          f"({eager_s / compiled_s:.2f}x; random numbers drawn as eager draws them)")
    print(f"{'loss part':<14}{'eager':>14}{'compiled':>14}{'rel. diff':>12}")
    ok = True
    for name, value in eager.items():
        diff = abs(traced[name] - value) / max(abs(value), 1e-12)
        ok &= diff <= args.rtol
        print(f"{name:<14}{value:>14.6g}{traced[name]:>14.6g}{diff:>12.2e}")
    grad_diff = float((traced_grad - eager_grad).norm() / eager_grad.norm().clamp(min=1e-12))
    ok &= grad_diff <= args.rtol
    print(f"{'gradient':<14}{'':>28}{grad_diff:>12.2e}  (|difference| / |eager|)")
    print("compiled and eager agree" if ok else f"they DIFFER by more than {args.rtol}")
    return ok


def main(argv: list[str] | None = None) -> int:
    try:
        return 0 if run(parse_args(argv)) else 1
    except AdarecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
