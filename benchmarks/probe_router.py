"""The router's gradient under the adaptive depth controller and under a fixed depth.

Usage (a script, not a test; what it found is in docs/method.md, "What the denoiser and the
router do in the equal-width run"):

    python benchmarks/probe_router.py --preset adarec-beauty-h64 --dataset Beauty \
        --data-dir ../shared/data [--batches 16] [--steps 70]

Builds the configured ADARec model and a copy with the same weights whose controller is
fixed at T_max (the without-ADC ablation). For each, it measures the gradient that the
recommendation loss sends to the router's parameters (the only loss that reaches them) over
the first ``--batches`` batches of a fixed shuffle of the training rows, each batch under
the same random seed for both models; then trains each model alone for ``--steps`` steps
(Adam with the configured learning rate and weight decay, all losses, the batches after
those) and measures again. Printed per model and point: the router output layer's weight
norm, the norm of the mean gradient over the batches (the consistent signal), the mean of
the per-batch norms, their ratio, and the norm of Adam's weight-decay term
``weight_decay * w`` over the same parameters, which Adam adds to the gradient.
"""

from __future__ import annotations

import argparse
import sys

import torch
from _setup import add_run_args, prepare_run  # benchmarks/_setup.py, beside this script

from adarec.errors import AdarecError
from adarec.model.adarec import ADARec
from adarec.setup import Run, make_optimizer
from adarec.train import make_batch


def fixed_twin(args: argparse.Namespace, run: Run) -> Run:
    """The same options with the controller fixed at T_max, holding ``run``'s weights
    (the fixed model has no controller parameters; everything else is copied)."""
    fixed = ["adarec.controller=fixed", f"adarec.fixed_depth={run.config.adarec.max_depth}"]
    twin = prepare_run(argparse.Namespace(**{**vars(args),
                                             "overrides": [*args.overrides, *fixed]}))
    result = twin.model.load_state_dict(run.model.state_dict(), strict=False)
    if result.missing_keys:
        raise AdarecError(f"the fixed-depth model has parameters the adaptive one lacks: "
                          f"{result.missing_keys}")
    return twin


def batches(run: Run, order: torch.Tensor, start: int, count: int):
    """``count`` training batches from batch ``start`` of ``order`` (wrapping around)."""
    size = run.config.train.batch_size
    n = max(1, len(order) // size)
    train = run.splits.train.to(run.device)
    for i in range(start, start + count):
        j = i % n
        rows = order[j * size : (j + 1) * size].to(run.device)
        yield i, make_batch(train, rows, None, trim=run.device.type == "cpu")


def router_signal(run: Run, order: torch.Tensor, count: int) -> dict[str, float]:
    """Norms of L_rec's gradient on the router over ``count`` batches (train mode)."""
    model = run.model.train()
    params = [p for p in model.router.parameters() if p.requires_grad]
    grads = []
    for i, batch in batches(run, order, 0, count):
        torch.manual_seed(1000 + i)  # the same dropout, noise and depth draws for both
        losses, _ = model.losses(batch)
        g = torch.autograd.grad(losses["rec"], params, allow_unused=True)
        grads.append(torch.cat([(x if x is not None else torch.zeros_like(p)).flatten()
                                for x, p in zip(g, params, strict=True)]))
    stacked = torch.stack(grads)
    mean, per_batch = stacked.mean(0).norm().item(), stacked.norm(dim=1).mean().item()
    weights = torch.cat([p.detach().flatten() for p in params])
    return {"out_norm": model.router.mlp[-1].weight.norm().item(),
            "mean": mean, "per_batch": per_batch, "ratio": mean / max(per_batch, 1e-30),
            "decay": run.config.train.weight_decay * weights.norm().item()}


def train_steps(run: Run, order: torch.Tensor, start: int, steps: int) -> None:
    model = run.model.train()
    optimizer = make_optimizer(model, run.config.train, run.device)
    for _, batch in batches(run, order, start, steps):
        out = model.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        out.total.backward()
        optimizer.step()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(p)
    p.add_argument("--batches", type=int, default=16, help="gradient batches (default 16)")
    p.add_argument("--steps", type=int, default=70, help="training steps between (default 70)")
    args = p.parse_args(argv)
    try:
        adaptive = prepare_run(args)
        a = adaptive.config.adarec
        if (not isinstance(adaptive.model, ADARec) or a.controller == "fixed"
                or a.router != "content"):
            raise AdarecError("probe_router compares an ADARec model with an adaptive "
                              "controller and a content router against its fixed-depth "
                              "twin: pick such a preset")
        twin = fixed_twin(args, adaptive)
    except AdarecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    order = torch.randperm(len(adaptive.splits.train),
                           generator=torch.Generator().manual_seed(adaptive.config.train.seed))
    named = (("adaptive", adaptive), (f"fixed {adaptive.config.adarec.max_depth}", twin))
    rows = [(name, "init", router_signal(run, order, args.batches)) for name, run in named]
    for _, run in named:  # both train before either is measured again (the global RNG)
        train_steps(run, order, args.batches, args.steps)
    rows += [(name, f"after {args.steps} steps", router_signal(run, order, args.batches))
             for name, run in named]
    print(f"{'model':<10} {'point':<16} {'|w_out|':>8} {'|mean g|':>10} {'mean |g_i|':>10} "
          f"{'ratio':>6} {'|wd * w|':>10}")
    for name, point, s in rows:
        print(f"{name:<10} {point:<16} {s['out_norm']:8.4f} {s['mean']:10.3g} "
              f"{s['per_batch']:10.3g} {s['ratio']:6.3f} {s['decay']:10.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
