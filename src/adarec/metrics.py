"""Ranking metrics as pure functions of 1-based ranks (one relevant item per user).

Each per-user function returns a float64 tensor of the same shape as ``ranks`` so that a
caller can average over any subset of users (e.g. a history-length bucket). With a single
relevant item the ideal DCG is 1, so NDCG@K is ``1 / log2(rank + 1)`` when ``rank <= K``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"cutoff k must be >= 1, got {k}")


def hit_rate(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """Per-user HR@k: 1.0 where ``rank <= k``, else 0.0 (float64, shape of ``ranks``)."""
    _check_k(k)
    return (ranks <= k).to(torch.float64)


def ndcg(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """Per-user NDCG@k: ``1 / log2(rank + 1)`` where ``rank <= k``, else 0.0 (float64)."""
    _check_k(k)
    r = ranks.to(torch.float64)
    return torch.where(ranks <= k, 1.0 / torch.log2(r + 1.0), torch.zeros_like(r))


def mrr(ranks: torch.Tensor) -> torch.Tensor:
    """Per-user reciprocal rank ``1 / rank`` over the full ranking, no cutoff (float64)."""
    return 1.0 / ranks.to(torch.float64)


def summarize(ranks: torch.Tensor, ks: Sequence[int] = (5, 10, 20)) -> dict[str, float]:
    """Mean HR@K, NDCG@K for each K in ``ks`` and MRR over all users in ``ranks``.

    Keys are ordered ``HR@k, NDCG@k`` per cutoff, then ``MRR``. An empty ``ranks`` tensor
    gives 0.0 for every metric (not NaN), so an empty length bucket never poisons a log;
    callers that need to tell "no users" from "all misses" should report the user count too.
    """
    ranks = ranks.reshape(-1)
    names: list[str] = []
    columns: list[torch.Tensor] = []
    for k in ks:
        names += [f"HR@{k}", f"NDCG@{k}"]
        columns += [hit_rate(ranks, k), ndcg(ranks, k)]
    names.append("MRR")
    columns.append(mrr(ranks))
    if ranks.numel() == 0:
        return dict.fromkeys(names, 0.0)
    # One (n_metrics, U) stack and a single device-to-host copy.
    means = torch.stack(columns).mean(dim=1).tolist()
    return dict(zip(names, means, strict=True))
