"""Recommendation losses over the shared item table, and the typed loss result.

Both losses score only real (non-padding) target positions. The full-softmax loss ranks the
target against every real item (padding and spare rows excluded), as the paper states; the
sampled BCE loss is the original release's: one random negative per position. Under
torchrun each is this process's share of the global batch's mean
(`adarec.distributed.global_mean`; alone, the plain mean).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from adarec.distributed import global_mean


class LossOutput(NamedTuple):
    """A training step's loss: ``total`` to back-propagate and named ``parts`` to log.

    ``parts`` holds the detached, *unweighted* losses; ``total`` is their weighted sum.
    ``stats`` holds other detached scalars worth logging (e.g. ADARec's depth shares).
    """

    total: torch.Tensor
    parts: dict[str, torch.Tensor]
    stats: dict[str, torch.Tensor] = {}  # noqa: RUF012  (never mutated)


def weigh(
    losses: dict[str, torch.Tensor], weights: dict[str, float],
    stats: dict[str, torch.Tensor] | None = None,
) -> LossOutput:
    """The one place where named losses are weighted and summed; ``stats`` ride along."""
    missing = set(losses) - set(weights)
    if missing:
        raise KeyError(f"no weight for loss(es) {sorted(missing)}")
    total = sum(weights[name] * value for name, value in losses.items())
    parts = {name: value.detach() for name, value in losses.items()}
    return LossOutput(total, parts, stats or {})


def _positions(
    hidden: torch.Tensor, targets: torch.Tensor, gather: bool | None,
    *extra: torch.Tensor,
) -> tuple[torch.Tensor, ...]:
    """(B, L, D), (B, L) -> (M, D), (M,) rows to score, targets 0 where padding; each
    ``extra`` (B, L) tensor (e.g. negatives) is cut the same way, (M,).

    ``gather`` (default: on the CPU, unless compiling) keeps only the real positions, which
    saves work; on a GPU every position is kept and padding targets are ignored by the loss
    instead, since a boolean gather waits for the device at every step (and its shape, known
    only at run time, would break a compiled graph).
    """
    if gather is None:
        gather = hidden.device.type == "cpu" and not torch.compiler.is_compiling()
    if gather:
        real = targets > 0
        return hidden[real], targets[real], *(x[real] for x in extra)
    return hidden.flatten(0, -2), targets.flatten(), *(x.flatten() for x in extra)


class FullSoftmaxCE(nn.Module):
    """Cross-entropy of ``h . item_table`` against the next item, over real items only.

    ``gather_real`` chooses how padding positions are left out (see `_positions`)."""

    def __init__(self, n_items: int, gather_real: bool | None = None) -> None:
        super().__init__()
        self.n_items = n_items
        self.gather_real = gather_real

    def forward(
        self, hidden: torch.Tensor, targets: torch.Tensor, items: torch.Tensor,
        inputs: torch.Tensor, negatives: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``negatives`` is accepted for a common signature with `SampledBCE` and unused."""
        h, y = _positions(hidden, targets, self.gather_real)
        # Scores of real items only (column j: item j + 1), so the padding row and spare
        # rows need no masking: no (M, C) mask to fill, copy and back-propagate.
        logits = h @ items[1 : self.n_items + 1].T  # (M, n_items)
        # Under torchrun, this process's share of the global batch's mean.
        return global_mean(F.cross_entropy(logits.float(), y - 1, ignore_index=-1), (y > 0).sum())


class SampledBCE(nn.Module):
    """The release's loss: -log s(h.e_pos) - log(1 - s(h.e_neg)) with one random negative.

    Negatives are drawn uniformly from 1..n_items and redrawn (a few vectorised rounds) while
    they equal the target or an item of the same input row, and never equal the target (on a
    catalogue of more than one item); the release redraws until the negative is outside the
    user's whole training sequence (for these inputs the same set but for one item).
    """

    def __init__(self, n_items: int, redraws: int = 3, gather_real: bool | None = None) -> None:
        super().__init__()
        self.n_items = n_items
        self.redraws = redraws
        self.gather_real = gather_real

    def sample_negatives(self, targets: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        neg = torch.randint(1, self.n_items + 1, targets.shape, device=targets.device)
        for _ in range(self.redraws):
            seen = (neg[:, :, None] == inputs[:, None, :]).any(-1) | (neg == targets)  # (B, L)
            fresh = torch.randint(1, self.n_items + 1, targets.shape, device=targets.device)
            neg = torch.where(seen, fresh, neg)
        # Whatever the redraws left, a negative is never the target itself.
        return torch.where(neg == targets, neg % self.n_items + 1, neg)

    def forward(
        self, hidden: torch.Tensor, targets: torch.Tensor, items: torch.Tensor,
        inputs: torch.Tensor, negatives: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean BCE over real target positions; ``negatives`` (B, L), when given, are used
        as they are (the release draws them on the data side), else they are sampled."""
        neg = self.sample_negatives(targets, inputs) if negatives is None else negatives
        h, pos, neg = _positions(hidden, targets, self.gather_real, neg)
        pos_logit = (h * items[pos]).sum(-1)
        neg_logit = (h * items[neg]).sum(-1)
        loss = (F.softplus(-pos_logit) + F.softplus(neg_logit)).float()
        real = (pos > 0).to(loss.dtype)
        return global_mean((loss * real).sum() / real.sum().clamp(min=1.0), real.sum())


def rec_loss(kind: str, n_items: int) -> nn.Module:
    """The recommendation loss named ``kind`` (``ce`` or ``bce``)."""
    losses = {"ce": FullSoftmaxCE, "bce": SampledBCE}
    return losses[kind](n_items)
