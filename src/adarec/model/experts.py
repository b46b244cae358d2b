"""ADARec's Hierarchical Parsing Mixture-of-Experts (docs/method.md#hierarchical-parsing-moe).

Two transformer experts read every level of the trajectory: the fine expert (trained through
the recommendation loss only) and the coarse expert (which also carries the trajectory
contrastive loss and ELCRec's intent learning). A content-aware router weighs each level for
the fine side (``g_k``) and the coarse side (``1 - g_k``); a gate fuses the two aggregates.
Shapes: T+1 levels, B users, L positions, D width.
"""

from __future__ import annotations

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
    """``g_k = sigmoid(MLP([Pool(Ehat_k) ; emb(k)]))``: (T+1, B, L, D) -> (T+1, B, L), or
    (T+1, B, 1) at the last position alone with ``last_only``.

    Pool is the mean over the items so far (`prefix_mean`), so the weight used at position t
    sees no later item; at the last position it is the paper's whole-sequence pool.
    """

    def __init__(self, *, dim: int, max_depth: int) -> None:
        super().__init__()
        self.level_embedding = nn.Embedding(max_depth + 1, dim)
        self.mlp = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, 1))

    def forward(self, levels: Tensor, real: Tensor, last_only: bool = False) -> Tensor:
        pooled = prefix_mean(levels, real)  # (T+1, B, L, D)
        if last_only:
            pooled = pooled[..., -1:, :]  # (T+1, B, 1, D)
        cond = self.level_embedding.weight[: levels.shape[0], None, None, :].expand_as(pooled)
        return torch.sigmoid(self.mlp(torch.cat([pooled, cond], -1))).squeeze(-1)


class ConstantRouter(nn.Module):
    """The "without router" ablation: ``g_k = value`` for every level, user and position."""

    def __init__(self, value: float = 0.5) -> None:
        super().__init__()
        self.value = value

    def forward(self, levels: Tensor, real: Tensor, last_only: bool = False) -> Tensor:
        n_levels, batch, length = levels.shape[:3]
        return levels.new_full((n_levels, batch, 1 if last_only else length), self.value)


def aggregate(outputs: Tensor, weights: Tensor, eps: float = 1e-8) -> Tensor:
    """``sum_k w_k out_k / (sum_k w_k + eps)``: (T+1, B, L, D), (T+1, B, L) -> (B, L, D)."""
    w = weights.unsqueeze(-1)
    return (w * outputs).sum(0) / (w.sum(0) + eps)


class Gate(nn.Module):
    """``gate = sigmoid(W z_coar + b)``; ``h = gate * z_fin + (1 - gate) * z_coar``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, z_fin: Tensor, z_coar: Tensor) -> Tensor:
        gate = torch.sigmoid(self.proj(z_coar))
        return gate * z_fin + (1 - gate) * z_coar


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
