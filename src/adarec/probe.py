"""The final pass over the test users: collapse measures of every model's user vectors and,
for ADARec, what its parts chose (docs/reports.md).

The user vector ``h`` is the model's last-position output, ``model(inputs, last_only=True)``
(B, D), the vector that `score` multiplies with the item table (the release's ensemble
returns its members' vectors side by side). Alignment needs two views of the same user:
here two CL4SRec augmentations (`random_augment`: crop, mask or reorder) of the test input,
drawn from a generator seeded with ``seed``, encoded in evaluation mode, so every model is
measured on the same perturbations and the numbers repeat.

For ADARec, forward hooks read, at the last position of each clean test input: the depth
the controller chose, the router's fine-side weight ``g_k`` per level and the gate's values
(``sigmoid(W z_coar + b)``, one per dimension). ADARec's length grouping is switched off
for that pass so that the hooks see the rows in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from adarec.collapse import alignment, effective_rank, top_pc_share, uniformity
from adarec.data.splits import EvalSplit, trim_left
from adarec.model.adarec import ADARec
from adarec.model.augment import random_augment
from adarec.model.diffusion import level_mask

GATE_BINS = 20
UNIFORMITY_USERS = 2048  # an (N, N) matrix: a fixed random subset of the users


class Probe(NamedTuple):
    """``summary``: JSON-ready measures; ``per_user``: (U,) or (U, K) arrays for the
    outcomes file, in the split's row order."""

    summary: dict[str, Any]
    per_user: dict[str, torch.Tensor]


@contextmanager
def _whole_batches(model: ADARec) -> Iterator[None]:
    """Run ADARec's batches whole (no CPU length groups, `adarec.model.grouping`), so that
    its parts see the rows in order; its grouping is restored after."""
    saved, model.grouping = model.grouping, None
    try:
        yield
    finally:
        model.grouping = saved


def _vectors(model: nn.Module, split: EvalSplit, batch_size: int,
             generator: torch.Generator | None) -> torch.Tensor:
    """(U, D) last-position outputs of ``split``'s inputs (augmented when ``generator``)."""
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(split), batch_size):
        inputs = split.inputs[start : start + batch_size].to(device)
        if generator is not None:
            inputs = random_augment(inputs, generator)
        (inputs,) = trim_left(inputs)
        out.append(model(inputs, last_only=True)[:, -1].float().cpu())
    return torch.cat(out)


def collapse_measures(h: torch.Tensor, views: tuple[torch.Tensor, torch.Tensor],
                      seed: int) -> dict[str, float]:
    """The four measures of `adarec.collapse` on user vectors ``h`` (U, D) and two views."""
    gen = torch.Generator().manual_seed(seed)
    subset = torch.randperm(len(h), generator=gen)[:UNIFORMITY_USERS]
    return {
        "effective_rank": effective_rank(h),
        "dim": h.shape[1],
        "uniformity": uniformity(h[subset]) if len(subset) >= 2 else float("nan"),
        "alignment": alignment(*views),
        "top10_variance_share": top_pc_share(h, 10),
        "users": len(h),
    }


class _ADARecHooks:
    """Forward hooks collecting ADARec's last-position depth, router weights and gate."""

    def __init__(self, model: ADARec) -> None:
        self.depth: list[torch.Tensor] = []
        self.router: list[torch.Tensor] = []
        self.gate: list[torch.Tensor] = []
        self.handles = [
            model.controller.register_forward_hook(self._on_depth),
            model.router.register_forward_hook(self._on_router),
            model.gate.register_forward_hook(self._on_gate),
        ]

    def _on_depth(self, module: nn.Module, args: Any, out: Any) -> None:
        self.depth.append(out.onehot[:, -1].float().cpu())  # (B, T+1)

    def _on_router(self, module: nn.Module, args: Any, out: torch.Tensor) -> None:
        self.router.append(out[..., -1].T.float().cpu())  # (T+1, B, L) -> (B, T+1)

    def _on_gate(self, module: nn.Module, args: Any, out: torch.Tensor) -> None:
        z_coar = args[1][:, -1]  # (B, D)
        self.gate.append(torch.sigmoid(module.proj(z_coar)).float().cpu())

    def remove(self) -> None:
        for h in self.handles:
            h.remove()

    def results(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        onehot = torch.cat(self.depth)  # (U, T+1)
        router, gate = torch.cat(self.router), torch.cat(self.gate)  # (U, T+1), (U, D)
        used = level_mask(onehot)  # (U, T+1): the levels each user's aggregate reads
        counts, edges = np.histogram(gate.numpy(), bins=GATE_BINS, range=(0.0, 1.0))
        summary = {
            "depth_counts": onehot.sum(0).long().tolist(),
            "router_mean_used": ((router * used).sum(0) / used.sum(0).clamp(min=1)).tolist(),
            "level_users": used.sum(0).long().tolist(),
            "gate_histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
            "gate_mean": float(gate.mean()),
        }
        per_user = {"depth": onehot.argmax(1).to(torch.int16),
                    "router": router.to(torch.float16),
                    "gate_mean": gate.mean(1).to(torch.float16)}
        return summary, per_user


def final_pass(model: nn.Module, split: EvalSplit, *, batch_size: int = 512,
               seed: int = 0) -> Probe:
    """Collapse measures (and ADARec's choices) over every row of ``split`` in eval mode."""
    was_training = model.training
    model.eval()
    hooks = _ADARecHooks(model) if isinstance(model, ADARec) else None
    try:
        with torch.inference_mode():
            with _whole_batches(model) if isinstance(model, ADARec) else nullcontext():
                h = _vectors(model, split, batch_size, None)
            if hooks is not None:
                hooks.remove()
            gen = torch.Generator().manual_seed(seed)
            views = (_vectors(model, split, batch_size, gen),
                     _vectors(model, split, batch_size, gen))
    finally:
        if hooks is not None:
            hooks.remove()
        model.train(was_training)
    summary: dict[str, Any] = {"collapse": collapse_measures(h, views, seed),
                               "views": "two random_augment views, eval mode"}
    per_user: dict[str, torch.Tensor] = {}
    if hooks is not None:
        summary["adarec"], per_user = hooks.results()
    return Probe(summary, per_user)
