"""What ADARec's denoiser, router and gate do in a trained model: the denoiser's error per
level beside the best any linear denoiser can do, and how much the router's and the gate's
choices move the fused representation (a script, not a test;
docs/method.md#what-the-mechanism-does-in-training).

Usage:

    python benchmarks/probe_levels.py --preset adarec-beauty-h64 --dataset Beauty \
        --data-dir ../shared/data [--checkpoint RUN/best.pt] [--batches 4] \
        [--fit-steps 2000] [--set ...]

For ``--batches`` random training batches it prints:

* per level k = 1..T, on every real position (training mode, as a step sees them, dropout
  included): ``deno`` the denoiser's mean squared error per coordinate, beside 1.000 for
  predicting zero noise and ``linear``, the error of the best linear estimate of the noise
  from ``E_k = a E0 + b eps``. With ``S`` the covariance of E0 over the batch's real
  positions (D x D) that error is ``1 - (b^2 / D) tr((a^2 S + b^2 I)^-1)``: a denoiser above
  it has not learned what a linear map of its input would give;
* with ``--fit-steps N``, ``refit``: the same per-level error of a fresh denoiser of the
  same architecture fitted for N Adam steps (lr 1e-3, no weight decay) to the denoising loss
  alone, on the checkpoint's frozen E0 (batches of 1,024 real positions, training mode): it
  tells whether the checkpoint's denoiser is held back by its training or by its form; and
  ``refit, wd``: the same fitted as training fits it, the loss weighted by
  ``adarec.deno_weight`` and Adam's (coupled) ``train.weight_decay`` on its parameters;
* in training and in evaluation mode, at the scored (last) positions: the router's fine-side
  weight ``g_k`` per level (mean and standard deviation over users), the gate's mean and
  standard deviation over users and coordinates, and the relative change
  ``||h' - h|| / ||h||`` of the fused representation when the router is replaced by
  ``g = 0.5`` and when the gate is replaced by 0.5;
* in evaluation mode, at the scored position, per history-length bucket: the depth
  controller's softmax ``p_u`` over depths 0..T, as the mean depth under ``p_u`` (its mean
  and standard deviation over users), the share of users whose argmax (the depth evaluation
  uses) is the bucket's most common one, and the mutual information between user and depth,
  ``H(mean_u p_u) - mean_u H(p_u)`` in nats (0 when every user gets the same distribution;
  at most ``ln(T + 1)``): how much the depth depends on the user.
"""

from __future__ import annotations

import argparse
import copy

import torch
from _setup import add_run_args, prepare_run  # benchmarks/_setup.py, beside this script
from torch import Tensor, nn
from tqdm.auto import tqdm

from adarec.checkpoint import load_checkpoint
from adarec.data.splits import trim_left
from adarec.model.diffusion import DepthController
from adarec.model.experts import ConstantRouter
from adarec.model.probes import LENGTH_BUCKETS, history_lengths


def linear_error(e0: Tensor, a: float, b: float) -> float:
    """The mean squared error per coordinate of the best linear estimate of ``eps`` from
    ``a e0 + b eps`` (``e0`` (N, D) samples, ``eps`` standard normal and independent)."""
    cov = torch.cov(e0.double().T)
    dim = cov.shape[0]
    inv = torch.linalg.inv(a * a * cov + b * b * torch.eye(dim, dtype=cov.dtype))
    return float(1 - b * b * torch.trace(inv) / dim)


class HalfGate(nn.Module):
    """The gate replaced by the constant 0.5: ``h = (z_fin + z_coar) / 2``."""

    def forward(self, z_fin: Tensor, z_coar: Tensor) -> Tensor:
        return 0.5 * (z_fin.float() + z_coar.float())


def noised(e0: Tensor, alpha_bars: Tensor) -> tuple[Tensor, Tensor]:
    """``e0`` (N, D) at every level: ``E_k = sqrt(abar_k) e0 + sqrt(1 - abar_k) eps_k``, as
    (T, N, 1, D) (the denoiser's (T, B, L, D) with L = 1), and the noise ``eps`` (T, N, D)."""
    eps = torch.randn(len(alpha_bars), *e0.shape)
    ab = alpha_bars[:, None, None]
    return (ab.sqrt() * e0 + (1 - ab).sqrt() * eps)[:, :, None, :], eps


def fused_last(model, inputs: Tensor) -> Tensor:
    """(B, D) the fused representation at the last position (the scored one)."""
    return model(inputs, last_only=True)[:, -1]


def routing(model, inputs: Tensor, seed: int) -> dict[str, object]:
    """Router and gate statistics at the last positions, and what replacing each does; the
    same random draws (dropout, Gumbel, noise) for the three forward passes."""
    seen: dict[str, Tensor] = {}
    hooks = [
        model.router.register_forward_hook(lambda m, i, out: seen.__setitem__("x", out)),
        model.gate.proj.register_forward_hook(lambda m, i, out: seen.__setitem__("a", out)),
    ]
    with torch.no_grad():
        torch.manual_seed(seed)
        h = fused_last(model, inputs)
        g = torch.sigmoid(seen["x"][..., -1])  # (T+1, B)
        gate = torch.sigmoid(seen["a"]).flatten()
        for hook in hooks:
            hook.remove()
        router = model.router
        model.router = ConstantRouter(0.5)
        torch.manual_seed(seed)
        h_router = fused_last(model, inputs)
        model.router = router
        gate_module = model.gate
        model.gate = HalfGate()
        torch.manual_seed(seed)
        h_gate = fused_last(model, inputs)
        model.gate = gate_module
    norm = h.norm()
    return {"g_mean": g.mean(1), "g_std": g.std(1), "gate": (gate.mean(), gate.std()),
            "router_effect": (h_router - h).norm() / norm,
            "gate_effect": (h_gate - h).norm() / norm}


def depth_probs(model, inputs: Tensor) -> Tensor:
    """(B, T+1) the depth controller's softmax at the last (scored) position, in the
    model's current mode."""
    seen: dict[str, Tensor] = {}
    hook = model.controller.head.register_forward_hook(
        lambda m, i, out: seen.__setitem__("logits", out))
    with torch.no_grad():
        fused_last(model, inputs)
    hook.remove()
    return seen["logits"][:, -1].float().softmax(-1)


def entropy(p: Tensor) -> Tensor:
    """Entropy in nats of each row of ``p`` (..., K)."""
    return -(p * p.clamp(min=1e-30).log()).sum(-1)


def print_depths(probs: Tensor, lengths: Tensor) -> None:
    """The per-bucket depth table of the module docstring."""
    depths = torch.arange(probs.shape[1], dtype=probs.dtype)
    buckets = [("all", 1, float("inf")), *LENGTH_BUCKETS]
    print("eval: depth controller at the scored position (p_u: its softmax over depths)")
    print(f"{'bucket':9s} {'users':>6s} {'E[d] mean':>9s} {'std':>6s} {'argmax':>7s} "
          f"{'share':>6s} {'MI nats':>8s} {'H(p_u)':>7s}")
    for name, lo, hi in buckets:
        rows = (lengths >= lo) & (lengths <= hi)
        if not rows.any():
            continue
        p = probs[rows]
        expected = p @ depths
        top = torch.bincount(p.argmax(1), minlength=p.shape[1])
        mi = entropy(p.mean(0)) - entropy(p).mean()
        print(f"{name:9s} {len(p):6d} {float(expected.mean()):9.2f} "
              f"{float(expected.std()) if len(p) > 1 else 0.0:6.2f} {int(top.argmax()):7d} "
              f"{float(top.max()) / len(p):6.2f} {float(mi):8.4f} {float(entropy(p).mean()):7.3f}")


def refit(model, train, steps: int, seed: int, *, weight: float = 1.0,
          weight_decay: float = 0.0) -> Tensor:
    """(T,) per-level error of a fresh copy of the denoiser fitted to ``weight * L_deno``
    alone, by Adam with (coupled, as in training) ``weight_decay``."""
    diffusion = model.diffusion
    ab = diffusion.alpha_bars
    torch.manual_seed(seed)
    fresh = copy.deepcopy(diffusion.denoiser)
    for m in fresh.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    optimizer = torch.optim.Adam(fresh.parameters(), lr=1e-3, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    model.train()

    def sample() -> tuple[Tensor, Tensor]:
        rows = torch.randperm(len(train), generator=gen)[:256]
        inputs, _ = trim_left(train.inputs[rows], train.targets[rows])
        with torch.no_grad():
            e0 = model.embedding(inputs)[inputs > 0][:1024]
        return noised(e0, ab)

    for _ in tqdm(range(steps), desc="refit", leave=False):
        noisy, eps = sample()
        loss = weight * (fresh(noisy).squeeze(2) - eps).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    total = torch.zeros(len(ab), dtype=torch.float64)
    with torch.no_grad():
        for _ in range(8):
            noisy, eps = sample()
            total += (fresh(noisy).squeeze(2) - eps).pow(2).mean((1, 2)).double()
    return total / 8


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(p)
    p.add_argument("--checkpoint", help="a run's best.pt or last.pt (default: freshly "
                   "initialised)")
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--fit-steps", type=int, default=0,
                   help="also fit a fresh denoiser for this many steps (see above)")
    args = p.parse_args(argv)
    run = prepare_run(args)
    model, cfg = run.model, run.config
    if args.checkpoint:
        model.load_state_dict(load_checkpoint(args.checkpoint)["state_dict"])
    model.grouping = None
    diffusion = model.diffusion
    if diffusion.denoiser is None:
        raise SystemExit("this configuration has no denoiser (adarec.denoise=false)")
    ab = diffusion.alpha_bars
    t_max = len(ab)
    train = run.splits.train
    gen = torch.Generator().manual_seed(cfg.train.seed)
    sums = torch.zeros(t_max, dtype=torch.float64)
    linear = torch.zeros(t_max, dtype=torch.float64)
    stats: dict[str, list[dict[str, object]]] = {"train": [], "eval": []}
    probs, lengths = [], []
    for i in range(args.batches):
        rows = torch.randperm(len(train), generator=gen)[: cfg.train.batch_size]
        inputs, _ = trim_left(train.inputs[rows], train.targets[rows])
        real = inputs > 0
        model.train()
        with torch.no_grad():
            e0 = model.embedding(inputs)[real]  # (N, D) real positions, dropout on
            noisy, eps = noised(e0, ab)
            err = (diffusion.denoiser(noisy).squeeze(2) - eps).pow(2).mean(-1)
        sums += err.mean(1).double()
        linear += torch.tensor([linear_error(e0, float(a.sqrt()), float((1 - a).sqrt()))
                                for a in ab], dtype=torch.float64)
        for mode in ("train", "eval"):
            model.train(mode == "train")
            stats[mode].append(routing(model, inputs, seed=cfg.train.seed + i))
        probs.append(depth_probs(model, inputs))  # evaluation mode, as left by the loop
        lengths.append(history_lengths(inputs))
    n = args.batches
    print(f"{cfg.preset} {args.overrides} checkpoint={args.checkpoint}; {n} batches")
    print("level       " + " ".join(f"{k:6d}" for k in range(1, t_max + 1)))
    print("noise std   " + " ".join(f"{float(s):6.3f}" for s in (1 - ab).sqrt()))
    print("deno        " + " ".join(f"{float(v):6.3f}" for v in sums / n))
    print("linear      " + " ".join(f"{float(v):6.3f}" for v in linear / n))
    if args.fit_steps:
        fitted = refit(model, train, args.fit_steps, cfg.train.seed)
        print("refit       " + " ".join(f"{float(v):6.3f}" for v in fitted))
        fitted = refit(model, train, args.fit_steps, cfg.train.seed,
                       weight=cfg.adarec.deno_weight, weight_decay=cfg.train.weight_decay)
        print("refit, wd   " + " ".join(f"{float(v):6.3f}" for v in fitted))
    print("zero        " + " ".join(f"{1.0:6.3f}" for _ in range(t_max)))
    for mode, rows in stats.items():
        g_mean = torch.stack([r["g_mean"] for r in rows]).mean(0)
        g_std = torch.stack([r["g_std"] for r in rows]).mean(0)
        print(f"{mode}: router g_k mean over users, levels 0..{t_max}: "
              + " ".join(f"{float(v):.4f}" for v in g_mean))
        print(f"{mode}: router g_k std over users                 : "
              + " ".join(f"{float(v):.4f}" for v in g_std))
        gate_mean = sum(float(r["gate"][0]) for r in rows) / n
        gate_std = sum(float(r["gate"][1]) for r in rows) / n
        router_effect = sum(float(r["router_effect"]) for r in rows) / n
        gate_effect = sum(float(r["gate_effect"]) for r in rows) / n
        print(f"{mode}: gate mean {gate_mean:.4f} std {gate_std:.4f}; ||h' - h|| / ||h|| with "
              f"g = 0.5: {router_effect:.4f}, with gate = 0.5: {gate_effect:.4f}")
    if isinstance(model.controller, DepthController):
        print_depths(torch.cat(probs), torch.cat(lengths))


if __name__ == "__main__":
    main()
