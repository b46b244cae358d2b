"""What pushes ADARec's depth controller: the gradients of each weighted loss on the depth
logits, and which depth the recommendation loss prefers, by history length (a script, not a
test; docs/method.md#what-the-mechanism-does-in-training).

Usage:

    python benchmarks/probe_depth.py --preset adarec-beauty --dataset Beauty \
        --data-dir ../shared/data --set model.hidden_size=64 [--checkpoint RUN/best.pt] \
        [--batches 8] [--train-passes 3 --train-rows 5120]

With ``--train-passes`` it first trains that many passes over a random subset of
``--train-rows`` training rows (as `adarec.train.train_epoch` does, Adam with the configured
settings) and prints after each pass what an epoch logs: the losses, L_deno beside its
predict-zero baseline, the depth histogram per history-length bucket, the level distances
and the router's weights.

For ``--batches`` random training batches (training mode, as a step sees them) it prints,
per history-length bucket of the position (items up to it):

* ``|d rec|``, ``|d expl|``, ``|d cont|``: mean L2 norm per real position of the gradient of
  ``w * L`` on that position's depth logits (T+1 values), L_rec's reaching them through the
  straight-through one-hot;
* ``rec pref``: L_rec's gradient on the one-hot, centred over the depths and sign-flipped
  (the first-order gain in -L_rec of moving a position's weight to depth k), averaged;
  ``argmax`` is the depth with the largest gain and ``share T`` how often it is T_max;
* ``p(T)``: the controller's mean probability of T_max.
"""

from __future__ import annotations

import argparse

import torch
from _setup import add_run_args, prepare_run  # benchmarks/_setup.py, beside this script

from adarec.checkpoint import load_checkpoint
from adarec.data.splits import TrainSplit, trim_left
from adarec.model.interface import Batch
from adarec.model.probes import LENGTH_BUCKETS
from adarec.setup import make_optimizer
from adarec.train import train_epoch


def show_pass(i: int, logs: dict[str, float], t_max: int) -> None:
    """One line of losses, then the depth histograms and per-level values of a pass."""
    keys = ("rec", "deno", "deno_zero", "cont", "expl")
    print(f"pass {i}: " + " ".join(f"{k} {logs[k]:.4f}" for k in keys if k in logs))
    for name, *_ in LENGTH_BUCKETS:
        counts = [logs[f"hist_{name}_depth_{k}"] for k in range(t_max + 1)]
        total = sum(counts) or 1.0
        print(f"  depth share {name:8}: " + " ".join(f"{c / total:.2f}" for c in counts))
    print("  noise_std : " + " ".join(f"{logs[f'noise_std_{k}']:.3f}"
                                      for k in range(1, t_max + 1)))
    print("  level_dist: " + " ".join(f"{logs[f'level_dist_{k}']:.3f}"
                                      for k in range(1, t_max + 1)))
    print("  router g_k: " + " ".join(f"{logs[f'router_{k}']:.4f}" for k in range(t_max + 1)))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(p)
    p.add_argument("--checkpoint", help="a run's best.pt (default: freshly initialised)")
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--train-passes", type=int, default=0)
    p.add_argument("--train-rows", type=int, default=5120)
    args = p.parse_args(argv)
    run = prepare_run(args)
    model, cfg = run.model, run.config
    if args.checkpoint:
        model.load_state_dict(load_checkpoint(args.checkpoint)["state_dict"])
    if args.train_passes:
        full = run.splits.train
        keep = torch.randperm(len(full), generator=torch.Generator().manual_seed(0))
        keep = keep[: args.train_rows]
        subset = TrainSplit(full.inputs[keep], full.targets[keep], full.users[keep])
        model.before_training(subset.inputs, cfg.train.seed)
        optimizer = make_optimizer(model, cfg.train, run.device)
        gen = torch.Generator().manual_seed(cfg.train.seed)
        for i in range(1, args.train_passes + 1):
            logs = train_epoch(model, optimizer, subset, batch_size=cfg.train.batch_size,
                               generator=gen, autocast=run.autocast)
            show_pass(i, logs, cfg.adarec.max_depth)
    model.grouping = None  # one controller call per batch: its tensors are whole
    seen: dict[str, torch.Tensor] = {}

    def keep_logits(module, inputs, out):
        seen["logits"] = out

    def keep_onehot(module, inputs, out):
        out.onehot.retain_grad()
        seen["onehot"] = out.onehot

    model.controller.head.register_forward_hook(keep_logits)
    model.controller.register_forward_hook(keep_onehot)
    train = run.splits.train
    gen = torch.Generator().manual_seed(cfg.train.seed)
    weights = model.loss_weights
    t_max = cfg.adarec.max_depth
    rows_by = {name: [] for name, *_ in LENGTH_BUCKETS}
    model.train()
    for _ in range(args.batches):
        rows = torch.randperm(len(train), generator=gen)[: cfg.train.batch_size]
        inputs, targets = trim_left(train.inputs[rows], train.targets[rows])
        losses, _ = model.losses(Batch(inputs, targets))
        logits, onehot = seen["logits"], seen["onehot"]
        grads = {name: torch.autograd.grad(weights[name] * losses[name], logits,
                                           retain_graph=True, allow_unused=True)[0]
                 for name in ("rec", "expl", "cont")}
        (g_onehot,) = torch.autograd.grad(losses["rec"], onehot, retain_graph=True)
        real = inputs > 0
        so_far = real.cumsum(1)
        pref = -(g_onehot - g_onehot.mean(-1, keepdim=True))  # (B, L, T+1)
        prob_t = logits.softmax(-1)[..., t_max]
        for name, lo, hi in LENGTH_BUCKETS:
            at = real & (so_far >= lo) & (so_far <= hi)
            if not at.any():
                continue
            norms = {k: (g[at].norm(dim=-1) if g is not None else torch.zeros(int(at.sum())))
                     for k, g in grads.items()}
            rows_by[name].append((norms, pref[at], prob_t[at]))
        model.zero_grad(set_to_none=True)
    print(f"{cfg.preset} {args.overrides} checkpoint={args.checkpoint}; {args.batches} batches")
    print("bucket     positions  |d rec|   |d expl|  |d cont|  argmax  share T  p(T)  "
          "rec pref by depth 0..T (x1e-8)")
    for name, parts in rows_by.items():
        if not parts:
            continue
        norms = {k: torch.cat([p[0][k] for p in parts]) for k in ("rec", "expl", "cont")}
        pref = torch.cat([p[1] for p in parts])
        prob_t = torch.cat([p[2] for p in parts])
        best = pref.argmax(-1)
        mean_pref = " ".join(f"{v * 1e8:+.1f}" for v in pref.mean(0).tolist())
        print(f"{name:10} {len(pref):9d}  {norms['rec'].mean():.2e}  {norms['expl'].mean():.2e}"
              f"  {norms['cont'].mean():.2e}  {int(pref.mean(0).argmax()):6d}  "
              f"{(best == t_max).float().mean():7.2f}  {prob_t.mean():.2f}  {mean_pref}")


if __name__ == "__main__":
    main()
