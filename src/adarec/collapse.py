"""Measures of representation collapse, as pure functions of a matrix of user vectors.

``h`` is (N, D): one final user representation per row (the vector a model multiplies with
its item table to score). See docs/reports.md for what each number means and how the report
gets ``h``; all are computed in float64.

* `effective_rank`: ``exp(H(p))`` with ``p = s / sum(s)`` the normalised singular values of
  ``h`` as it is (not centred), Roy and Vetterli (2007). 1 for a rank-1 matrix, ``d`` for d
  orthonormal rows; at most ``min(N, D)``. Singular values below the input dtype's rounding
  floor (``s_max * max(N, D) * eps``) count as zero.
* `top_pc_share`: the share of the variance (of the centred rows) in the top ``k``
  principal components; 1.0 when the rows span at most ``k`` directions.
* `uniformity`: ``log mean_{i != j} exp(-t ||z_i - z_j||^2)``, ``z`` the L2-normalised rows
  (Wang and Isola, 2020, t = 2): lower is more uniform on the sphere; 0 when all rows agree.
* `alignment`: ``mean_i ||z_i - z'_i||^alpha`` between two views of the same users
  (alpha = 2): 0 when the views agree.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _matrix(h: torch.Tensor) -> torch.Tensor:
    if h.dim() != 2 or h.shape[0] == 0:
        raise ValueError(f"expected a non-empty (N, D) matrix, got shape {tuple(h.shape)}")
    return h.detach().to(torch.float64)


def effective_rank(h: torch.Tensor) -> float:
    """``exp`` of the entropy of the normalised singular values of ``h`` (N, D)."""
    s = torch.linalg.svdvals(_matrix(h))  # (min(N, D),)
    if s.max() <= 0:
        return 0.0  # an all-zero matrix has no direction at all
    # Singular values under the input precision's noise floor (numpy's matrix_rank rule)
    # are rounding errors of zeros, not directions.
    eps = torch.finfo(h.dtype).eps if h.is_floating_point() else 0.0
    s = s[s > s.max() * max(h.shape) * eps]
    p = s / s.sum()
    p = p[p > 0]
    return math.exp(float(-(p * p.log()).sum()))


def top_pc_share(h: torch.Tensor, k: int = 10) -> float:
    """Share of the total variance of the rows of ``h`` (N, D) in its top ``k`` principal
    components (eigenvalues of the covariance); NaN when the rows do not vary."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    x = _matrix(h)
    x = x - x.mean(0, keepdim=True)
    var = torch.linalg.svdvals(x).pow(2)  # (min(N, D),) descending
    total = var.sum()
    if total <= 0:
        return float("nan")
    return float(var[:k].sum() / total)


def uniformity(h: torch.Tensor, t: float = 2.0) -> float:
    """``log`` of the mean Gaussian potential ``exp(-t ||z_i - z_j||^2)`` over pairs i != j of
    the L2-normalised rows of ``h`` (N >= 2, D). Costs an (N, N) matrix: subsample large N."""
    z = F.normalize(_matrix(h), dim=1)
    n = z.shape[0]
    if n < 2:
        raise ValueError("uniformity needs at least 2 rows")
    sq = (2.0 - 2.0 * (z @ z.T)).clamp(min=0.0)  # (N, N) squared distances on the sphere
    off = ~torch.eye(n, dtype=torch.bool)
    return float(torch.logsumexp(-t * sq[off], 0) - math.log(n * (n - 1)))


def alignment(h: torch.Tensor, h_other: torch.Tensor, alpha: float = 2.0) -> float:
    """Mean ``||z_i - z'_i||^alpha`` over rows, ``z`` and ``z'`` the L2-normalised rows of
    two views ``h`` and ``h_other`` (N, D) of the same N users."""
    z, z2 = F.normalize(_matrix(h), dim=1), F.normalize(_matrix(h_other), dim=1)
    if z.shape != z2.shape:
        raise ValueError(f"views differ in shape: {tuple(z.shape)} vs {tuple(z2.shape)}")
    return float((z - z2).norm(dim=1).pow(alpha).mean())
