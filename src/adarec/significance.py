"""Paired significance of per-user metric differences (docs/reports.md).

`paired_test` compares a model with a baseline on the same users: SciPy's Wilcoxon
signed-rank test on the per-user differences (users whose difference is exactly 0, such as
two misses, are dropped, SciPy's default ``zero_method="wilcox"``), and the mean difference
with a percentile bootstrap 95% interval over users. `holm` corrects a family of p-values
(one per model compared with the same baseline) by Holm's step-down method.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import stats


class PairedTest(NamedTuple):
    """``mean_diff`` = mean(model - baseline) over ``n`` users, ``ci`` its bootstrap 95%
    interval; ``p`` the two-sided Wilcoxon p-value (NaN when every difference is 0), over
    ``n_nonzero`` users whose difference is not 0."""

    n: int
    mean_diff: float
    ci: tuple[float, float]
    statistic: float
    p: float
    n_nonzero: int


def paired_test(
    model: np.ndarray, baseline: np.ndarray, *, n_resamples: int = 2000, seed: int = 0,
) -> PairedTest:
    """Wilcoxon signed-rank test and bootstrap interval of ``model - baseline`` (both (N,),
    the same users in the same order)."""
    model, baseline = np.asarray(model, np.float64), np.asarray(baseline, np.float64)
    if model.shape != baseline.shape or model.ndim != 1:
        raise ValueError(f"paired samples must be equal 1-d arrays, got {model.shape} "
                         f"and {baseline.shape}")
    if len(model) < 2:
        raise ValueError("a paired test needs at least 2 users")
    diff = model - baseline
    nonzero = int(np.count_nonzero(diff))
    if nonzero == 0:
        statistic, p = float("nan"), float("nan")
    else:
        res = stats.wilcoxon(diff)
        statistic, p = float(res.statistic), float(res.pvalue)
    rng = np.random.default_rng(seed)
    boot = stats.bootstrap((diff,), np.mean, n_resamples=n_resamples, batch=200,
                           method="percentile", rng=rng, vectorized=True)
    ci = (float(boot.confidence_interval.low), float(boot.confidence_interval.high))
    return PairedTest(len(diff), float(diff.mean()), ci, statistic, p, nonzero)


def holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order: the i-th smallest p (0-based) is
    multiplied by ``m - i``, made non-decreasing along that order and capped at 1. NaN
    entries stay NaN and do not count towards ``m``."""
    p = np.asarray(pvalues, np.float64)
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    if len(idx) == 0:
        return out.tolist()
    order = idx[np.argsort(p[idx], kind="stable")]
    m = len(order)
    scaled = np.minimum(1.0, p[order] * (m - np.arange(m)))
    out[order] = np.maximum.accumulate(scaled)
    return out.tolist()
