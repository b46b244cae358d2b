"""ADARec's Hierarchical Parsing Mixture-of-Experts (docs/method.md#hierarchical-parsing-moe).

Two transformer experts read every level of the trajectory: the fine expert (trained through
the recommendation loss only) and the coarse expert (which also carries the trajectory
contrastive loss and ELCRec's intent learning). A content-aware router weighs each level for
the fine side (``g_k``) and the coarse side (``1 - g_k``); a gate fuses the two aggregates.
Shapes: T+1 levels, B users, L positions, D width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def prefix_mean(x: Tensor, real: Tensor) -> Tensor:
    """Causal pooling: mean of the real positions up to each position.

    (..., B, L, D) and (B, L) -> (..., B, L, D); the last position holds the whole mean.
    """
    w = real.to(x.dtype).unsqueeze(-1)  # (B, L, 1)
    return (x * w).cumsum(-2) / w.cumsum(-2).clamp(min=1.0)


class ContentRouter(nn.Module):
    """The router's logits ``x_k = MLP([Pool(Ehat_k) ; emb(k)])``, so that
    ``g_k = sigmoid(x_k)``: (T+1, B, L, D) -> (T+1, B, L), or (T+1, B, 1) at the last
    position alone with ``last_only``.

    Pool is the mean over the items so far (`prefix_mean`), so the weight used at position t
    sees no later item; at the last position it is the paper's whole-sequence pool. It runs
    in fp32 even under autocast, and returns logits rather than ``g``: in bf16 any ``g``
    above ~0.998 is exactly 1.0, and ``1 - g`` (the coarse side's weight) exactly 0; see
    `route`, which takes ``1 - g`` as ``sigmoid(-x)``.
    """

    def __init__(self, *, dim: int, max_depth: int) -> None:
        super().__init__()
        self.level_embedding = nn.Embedding(max_depth + 1, dim)
        self.mlp = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, 1))

    def forward(self, levels: Tensor, real: Tensor, last_only: bool = False) -> Tensor:
        with torch.autocast(levels.device.type, enabled=False):
            pooled = prefix_mean(levels.float(), real)  # (T+1, B, L, D)
            if last_only:
                pooled = pooled[..., -1:, :]  # (T+1, B, 1, D)
            cond = self.level_embedding.weight[: levels.shape[0], None, None, :]
            return self.mlp(torch.cat([pooled, cond.expand_as(pooled)], -1)).squeeze(-1)


class ConstantRouter(nn.Module):
    """The "without router" ablation: ``g_k = value`` for every level, user and position
    (returned as its logit, like `ContentRouter`)."""

    def __init__(self, value: float = 0.5) -> None:
        super().__init__()
        self.logit = math.log(value / (1 - value))

    def forward(self, levels: Tensor, real: Tensor, last_only: bool = False) -> Tensor:
        n_levels, batch, length = levels.shape[:3]
        return levels.new_full((n_levels, batch, 1 if last_only else length), self.logit,
                               dtype=torch.float32)


def aggregate(outputs: Tensor, weights: Tensor) -> Tensor:
    """``sum_k w_k out_k / sum_k w_k`` in fp32: (T+1, B, L, D), (T+1, B, L) -> (B, L, D).

    The sum of weights is clamped at fp32's smallest normal number, not offset by an
    epsilon, so small but real weights (``1 - g`` near 1e-8) still give a weighted mean."""
    w = weights.float().unsqueeze(-1)
    return (w * outputs.float()).sum(0) / w.sum(0).clamp(min=torch.finfo(torch.float32).tiny)


class Gate(nn.Module):
    """``gate = sigmoid(W z_coar + b)``; ``h = gate * z_fin + (1 - gate) * z_coar``, in fp32
    even under autocast, with ``1 - gate`` computed as ``sigmoid(-(W z_coar + b))``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, z_fin: Tensor, z_coar: Tensor) -> Tensor:
        with torch.autocast(z_coar.device.type, enabled=False):
            z_coar = z_coar.float()
            a = self.proj(z_coar)
            return torch.sigmoid(a) * z_fin.float() + torch.sigmoid(-a) * z_coar


def route(fine: Tensor, coarse: Tensor, logits: Tensor, used: Tensor, gate: Gate) -> Tensor:
    """The fused ``h`` (B, L, D) from the experts' outputs over the levels.

    ``fine``, ``coarse`` (T+1, B, L, D); ``logits`` (T+1, B, L) the router's ``x_k``;
    ``used`` (T+1, B, L) the level mask ``m_k``. ``z_fin = sum m g F / sum m g`` and
    ``z_coar = sum m (1-g) C / sum m (1-g)`` with ``g = sigmoid(x)`` and ``1 - g`` computed
    as ``sigmoid(-x)`` (exact in fp32 where ``1 - sigmoid(x)`` would round to 0), then
    ``h = gate(z_fin, z_coar)``.
    """
    z_fin = aggregate(fine, used * torch.sigmoid(logits.float()))
    z_coar = aggregate(coarse, used * torch.sigmoid(-logits.float()))
    return gate(z_fin, z_coar)


def trajectory_contrast(
    pooled: Tensor, depth: Tensor, temperature: float = 0.07
) -> Tensor:
    """InfoNCE pulling each coarse level towards the next-deeper level of the same user.

    ``pooled`` (T+1, B, D) pooled coarse-expert outputs per level; ``depth`` (B,) each user's
    depth T_u. The pair (k, k+1) counts for user b when ``floor(T_u / 2) <= k <= T_u - 1``;
    the other users' level k+1 in the batch are the negatives. Cosine similarity over
    ``temperature``. Returns the mean over counted pairs (0 when there are none).
    """
    z = F.normalize(pooled, dim=-1)
    logits = z[:-1] @ z[1:].transpose(1, 2) / temperature  # (T, B, B)
    n_pairs, batch = logits.shape[:2]
    labels = torch.arange(batch, device=z.device).expand(n_pairs, batch)
    loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none")
    k = torch.arange(n_pairs, device=z.device)[:, None]  # (T, 1)
    counted = ((k >= torch.div(depth, 2, rounding_mode="floor")) & (k <= depth - 1)).flatten()
    counted = counted.to(loss.dtype)
    return (loss * counted).sum() / counted.sum().clamp(min=1.0)
