"""Recommendation losses over the shared item table, and the typed loss result.

Every loss scores only real (non-padding) target positions. The full-softmax loss ranks the
target against every real item (padding and spare rows excluded), as the paper states, at
once or in chunks of items (the same value and gradient without the whole (positions x
items) logit matrix in memory); the sampled BCE loss is the original release's: one random
negative per position. For large catalogues (docs/method.md#losses-for-large-catalogues):
``sampled_softmax`` (k uniform negatives shared by the batch, with the logQ correction) and
``gbce`` (gSASRec's calibrated BCE with k negatives). Under torchrun each is this process's
share of the global batch's mean (`adarec.distributed.global_mean`; alone, the plain mean).
"""

from __future__ import annotations

import math
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


class _ChunkedCE(torch.autograd.Function):
    """Sum over the rows of ``weight * (logsumexp(h . items) - h . items[y])``, computed in
    chunks of ``chunk`` items, forward and backward, so that no (M, n_items) matrix exists:
    the backward pass recomputes each chunk's softmax from the saved log-partition. Sums run
    in at least fp32 (fp64 inputs stay fp64)."""

    @staticmethod
    def forward(ctx, h, items, y, weight, chunk):  # noqa: ANN001, ANN205 - autograd's API
        acc = torch.promote_types(h.dtype, torch.float32)
        lse = torch.full((h.shape[0],), float("-inf"), device=h.device, dtype=acc)
        for start in range(0, items.shape[0], chunk):
            logits = (h @ items[start : start + chunk].T).to(acc)
            lse = torch.logaddexp(lse, logits.logsumexp(dim=1))
        target = (h * items.index_select(0, y)).sum(-1).to(acc)
        ctx.save_for_backward(h, items, y, weight, lse)
        ctx.chunk = chunk
        return ((lse - target) * weight.to(acc)).sum()

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        h, items, y, weight, lse = ctx.saved_tensors
        acc = lse.dtype
        hs, scale = h.to(acc), (grad * weight).to(acc)[:, None]  # (M, 1)
        grad_h = torch.zeros_like(hs)
        grad_items = torch.zeros(items.shape, dtype=acc, device=items.device)
        for start in range(0, items.shape[0], ctx.chunk):
            part = items[start : start + ctx.chunk].to(acc)
            p = torch.exp(hs @ part.T - lse[:, None]) * scale  # (M, c): the softmax's share
            grad_h += p @ part
            grad_items[start : start + ctx.chunk] += p.T @ hs
        grad_h -= scale * items.index_select(0, y).to(acc)
        grad_items.index_add_(0, y, -scale * hs)
        return grad_h.to(h.dtype), grad_items.to(items.dtype), None, None, None


def chunked_cross_entropy(h: torch.Tensor, items: torch.Tensor, y: torch.Tensor,
                          chunk: int) -> torch.Tensor:
    """``F.cross_entropy(h @ items.T, y - 1, ignore_index=-1)`` (``y`` 1-based, 0 ignored)
    computed ``chunk`` items at a time (see `_ChunkedCE`); the same value and gradients."""
    valid = y > 0
    weight = valid.float() / valid.sum().clamp(min=1)
    return _ChunkedCE.apply(h, items, (y - 1).clamp(min=0), weight, chunk)


class FullSoftmaxCE(nn.Module):
    """Cross-entropy of ``h . item_table`` against the next item, over real items only.

    ``gather_real`` chooses how padding positions are left out (see `_positions`);
    ``chunk_items`` computes it that many items at a time (`chunked_cross_entropy`)."""

    def __init__(self, n_items: int, gather_real: bool | None = None,
                 chunk_items: int | None = None) -> None:
        super().__init__()
        self.n_items = n_items
        self.gather_real = gather_real
        self.chunk_items = chunk_items

    def forward(
        self, hidden: torch.Tensor, targets: torch.Tensor, items: torch.Tensor,
        inputs: torch.Tensor, negatives: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``negatives`` is accepted for a common signature with `SampledBCE` and unused."""
        h, y = _positions(hidden, targets, self.gather_real)
        if self.chunk_items is not None and self.chunk_items < self.n_items:
            loss = chunked_cross_entropy(h, items[1 : self.n_items + 1], y, self.chunk_items)
            return global_mean(loss, (y > 0).sum())
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
        return _real_mean(loss, pos)


def _real_mean(loss: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean of per-position ``loss`` (M,) over the real targets ``y > 0`` (this process's
    share of the global batch's mean under torchrun)."""
    real = (y > 0).to(loss.dtype)
    return global_mean((loss * real).sum() / real.sum().clamp(min=1.0), real.sum())


def _uniform_negatives(k: int, n_items: int, device: torch.device) -> torch.Tensor:
    """(k,) item ids drawn uniformly from 1..n_items, with replacement, shared by the batch."""
    return torch.randint(1, n_items + 1, (k,), device=device)


class SampledSoftmax(nn.Module):
    """Sampled softmax with the logQ correction (Bengio and Senecal 2008; eSASRec, RecSys
    2025): each position's target against ``k`` negatives drawn with replacement from ``q``
    and shared by the batch; a negative's logit is corrected by ``-log(k q_j)``, so that
    ``sum_j exp(s_j - log(k q_j))`` estimates the full softmax's partition over the items; a
    negative equal to the position's target is masked out. ``q`` is uniform, or (``sampling=
    "popularity"``) each item's share of the training inputs' interactions plus one, counted
    once before training (`observe`) and kept in the state dict, so a resumed run samples
    alike. The gradient tends to the full softmax's as ``k`` grows
    (`tests/test_losses_large.py` checks it by Monte Carlo)."""

    def __init__(self, n_items: int, negatives: int, gather_real: bool | None = None,
                 logq: bool = True, sampling: str = "uniform") -> None:
        super().__init__()
        if sampling not in ("uniform", "popularity"):
            raise ValueError(f"sampling must be 'uniform' or 'popularity', got {sampling!r}")
        self.n_items, self.k, self.gather_real = n_items, negatives, gather_real
        self.logq = logq  # False: no correction (an ablation; biased)
        self.sampling = sampling
        if sampling == "popularity":  # item j's count + 1 at j - 1 (uniform until observed)
            self.register_buffer("counts", torch.ones(n_items))

    @torch.no_grad()
    def observe(self, train_inputs: torch.Tensor) -> None:
        """Count the items of the training inputs (popularity sampling; else nothing)."""
        if self.sampling == "popularity":
            ids = train_inputs[train_inputs > 0].to(self.counts.device)
            self.counts.copy_(torch.bincount(ids - 1, minlength=self.n_items)[: self.n_items]
                              .to(self.counts.dtype) + 1.0)

    def draw(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(k,) negative ids and their ``log(k q)``."""
        if self.sampling == "uniform":
            neg = _uniform_negatives(self.k, self.n_items, device)
            return neg, torch.full((self.k,), math.log(self.k / self.n_items), device=device)
        q = self.counts / self.counts.sum()
        index = torch.multinomial(q, self.k, replacement=True)
        return index + 1, (self.k * q[index]).log()

    def forward(self, hidden: torch.Tensor, targets: torch.Tensor, items: torch.Tensor,
                inputs: torch.Tensor, negatives: torch.Tensor | None = None) -> torch.Tensor:
        h, y = _positions(hidden, targets, self.gather_real)
        neg, log_kq = self.draw(h.device)  # (k,), (k,)
        pos_logit = (h * items[y]).sum(-1, keepdim=True).float()  # (M, 1)
        neg_logit = (h @ items[neg].T).float()  # (M, k)
        if self.logq:
            neg_logit = neg_logit - log_kq.float()[None, :]
        neg_logit = neg_logit.masked_fill(neg[None, :] == y[:, None], float("-inf"))
        logits = torch.cat([pos_logit, neg_logit], dim=1)
        loss = torch.logsumexp(logits, dim=1) - pos_logit[:, 0]
        return _real_mean(loss, y)


def gbce_beta(negatives: int, n_items: int, t: float) -> float:
    """gSASRec's exponent of the positive's probability (Petrov and Macdonald, RecSys 2023):
    ``beta = alpha (t (1 - 1/alpha) + 1/alpha)`` with the sampling rate ``alpha = k /
    (n_items - 1)``; ``t = 0`` gives plain BCE (beta 1), ``t = 1`` beta = alpha."""
    alpha = negatives / max(n_items - 1, 1)
    return alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)


class GBCE(nn.Module):
    """gSASRec's generalised BCE with ``k`` negatives, drawn uniformly and shared by the
    batch (so memory is (positions x k), not (positions x k x D)); a negative equal to a
    position's target does not count for it: ``-beta log s(s+) - sum_j log(1 - s(s_j))``
    per real position, averaged over them (`gbce_beta`)."""

    def __init__(self, n_items: int, negatives: int, t: float,
                 gather_real: bool | None = None) -> None:
        super().__init__()
        self.n_items, self.k, self.gather_real = n_items, negatives, gather_real
        self.beta = gbce_beta(negatives, n_items, t)

    def forward(self, hidden: torch.Tensor, targets: torch.Tensor, items: torch.Tensor,
                inputs: torch.Tensor, negatives: torch.Tensor | None = None) -> torch.Tensor:
        h, y = _positions(hidden, targets, self.gather_real)
        neg = _uniform_negatives(self.k, self.n_items, h.device)  # (k,)
        pos_logit = (h * items[y]).sum(-1).float()  # (M,)
        neg_loss = F.softplus((h @ items[neg].T).float())  # (M, k)
        neg_loss = neg_loss.masked_fill(neg[None, :] == y[:, None], 0.0)
        loss = self.beta * F.softplus(-pos_logit) + neg_loss.sum(-1)
        return _real_mean(loss, y)


def rec_loss(kind: str, n_items: int, *, negatives: int = 256, gbce_t: float = 0.75,
             chunk_items: int | None = None, sampling: str = "uniform") -> nn.Module:
    """The recommendation loss named ``kind``: ``ce`` (in ``chunk_items`` chunks if given),
    ``bce``, ``sampled_softmax`` (``negatives`` drawn by ``sampling``) or ``gbce``."""
    if kind == "ce":
        return FullSoftmaxCE(n_items, chunk_items=chunk_items)
    if kind == "bce":
        return SampledBCE(n_items)
    if kind == "sampled_softmax":
        return SampledSoftmax(n_items, negatives, sampling=sampling)
    if kind == "gbce":
        return GBCE(n_items, negatives, gbce_t)
    raise ValueError(f"unknown rec_loss {kind!r}")
