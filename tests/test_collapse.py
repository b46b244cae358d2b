"""Collapse measures on hand-made matrices, and the significance helper against SciPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from adarec.collapse import alignment, effective_rank, top_pc_share, uniformity
from adarec.significance import holm, paired_test


def test_effective_rank_of_rank_one_is_one():
    u = torch.tensor([[1.0], [2.0], [-3.0], [0.5]])
    v = torch.tensor([[0.3, -1.0, 2.0, 0.7, 1.1]])
    assert effective_rank(u @ v) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("d", [1, 3, 8])
def test_effective_rank_of_orthonormal_rows_is_their_number(d):
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(d)))
    assert effective_rank(q[:d]) == pytest.approx(d, rel=1e-9)  # d orthonormal rows
    assert effective_rank(torch.eye(d)) == pytest.approx(d, rel=1e-12)


def test_effective_rank_by_hand():
    # Singular values 3 and 1: p = (3/4, 1/4), exp(H) = exp(-(.75 ln .75 + .25 ln .25)).
    h = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert effective_rank(h) == pytest.approx(expected, rel=1e-12)
    assert 1.0 < expected < 2.0


def test_top_pc_share():
    # Centred rows (+-2, 0), (0, +-1): variances 8 and 2 over the two axes.
    h = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 1.0], [0.0, -1.0]]) + 5.0
    assert top_pc_share(h, 1) == pytest.approx(0.8)
    assert top_pc_share(h, 10) == pytest.approx(1.0)
    assert math.isnan(top_pc_share(torch.ones(3, 2), 1))


def test_uniformity_and_alignment_by_hand():
    # Two orthogonal unit vectors: squared distance 2, so log exp(-2 * 2) = -4.
    assert uniformity(torch.tensor([[3.0, 0.0], [0.0, 0.5]])) == pytest.approx(-4.0)
    assert uniformity(torch.tensor([[1.0, 1.0], [2.0, 2.0]])) == pytest.approx(0.0)
    # Three rows: pairs (a,b) and (b,a) at distance^2 2, the other four at 0 and 4.
    h = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    pots = [math.exp(-4), math.exp(-4), math.exp(-8)] * 2
    assert uniformity(h) == pytest.approx(math.log(sum(pots) / 6))
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert alignment(x, 3 * x) == pytest.approx(0.0)
    assert alignment(x, -x) == pytest.approx(4.0)  # antipodal: ||2z||^2 = 4
    with pytest.raises(ValueError):
        alignment(x, x[:1])


def test_wilcoxon_matches_scipy_and_hand_values():
    model = np.array([1.0, 2.0, 3.0, 0.0, 4.0, 0.5])
    base = np.array([0.0, 0.0, 0.0, 0.5, 0.0, 0.5])  # one zero difference, dropped
    res = paired_test(model, base, n_resamples=1000)
    ref = stats.wilcoxon(model - base)
    # |d| = 1, 2, 3, 0.5, 4 -> ranks 2, 3, 4, 1, 5; W- = 1; exact two-sided p = 2 * 2/32.
    assert res.statistic == ref.statistic == 1.0
    assert res.p == pytest.approx(ref.pvalue) and res.p == pytest.approx(0.125)
    assert (res.n, res.n_nonzero) == (6, 5)
    assert res.mean_diff == pytest.approx((1 + 2 + 3 - 0.5 + 4) / 6)
    assert res.ci[0] < res.mean_diff < res.ci[1]


def test_paired_test_without_differences():
    same = np.array([0.1, 0.2, 0.3])
    res = paired_test(same, same, n_resamples=200)
    assert math.isnan(res.p) and res.mean_diff == 0.0 and res.n_nonzero == 0
    with pytest.raises(ValueError):
        paired_test(same, same[:2])


def test_holm_by_hand():
    # Sorted 0.01, 0.03, 0.04 -> x3, x2, x1 = 0.03, 0.06, 0.04 -> monotone 0.03, 0.06, 0.06.
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    out = holm([float("nan"), 0.02])
    assert math.isnan(out[0]) and out[1] == pytest.approx(0.02)
