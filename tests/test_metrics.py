"""Metrics against hand-computed values."""

import math

import pytest
import torch

from adarec.metrics import hit_rate, mrr, ndcg, summarize

RANKS = torch.tensor([1, 3, 6, 25])


def test_per_user_values_and_dtype():
    assert hit_rate(RANKS, 5).tolist() == [1.0, 1.0, 0.0, 0.0]
    assert ndcg(RANKS, 5).tolist() == pytest.approx([1.0, 0.5, 0.0, 0.0])
    assert ndcg(RANKS, 10).tolist() == pytest.approx([1.0, 0.5, 1 / math.log2(7), 0.0])
    assert mrr(RANKS).tolist() == pytest.approx([1.0, 1 / 3, 1 / 6, 1 / 25])
    for t in (hit_rate(RANKS, 5), ndcg(RANKS, 5), mrr(RANKS)):
        assert t.dtype == torch.float64 and t.shape == RANKS.shape


def test_summarize_hand_computed():
    out = summarize(RANKS)
    assert list(out) == ["HR@5", "NDCG@5", "HR@10", "NDCG@10", "HR@20", "NDCG@20", "MRR"]
    assert out["HR@5"] == pytest.approx(0.5)
    assert out["NDCG@5"] == pytest.approx((1 + 1 / math.log2(4)) / 4)
    assert out["HR@10"] == pytest.approx(0.75)
    assert out["NDCG@10"] == pytest.approx((1 + 0.5 + 1 / math.log2(7)) / 4)
    assert out["HR@20"] == pytest.approx(0.75)
    assert out["NDCG@20"] == pytest.approx(out["NDCG@10"])
    assert out["MRR"] == pytest.approx((1 + 1 / 3 + 1 / 6 + 1 / 25) / 4)
    assert all(isinstance(v, float) for v in out.values())


def test_summarize_custom_ks_and_boundary():
    out = summarize(torch.tensor([1, 2]), ks=(1, 2))
    assert out == pytest.approx(
        {"HR@1": 0.5, "NDCG@1": 0.5, "HR@2": 1.0, "NDCG@2": (1 + 1 / math.log2(3)) / 2, "MRR": 0.75}
    )


def test_summarize_empty_is_zero_not_nan():
    out = summarize(torch.zeros(0, dtype=torch.int64))
    assert out == dict.fromkeys(out, 0.0) and len(out) == 7


def test_bad_cutoff():
    with pytest.raises(ValueError, match="k must be >= 1"):
        hit_rate(RANKS, 0)
    with pytest.raises(ValueError):
        ndcg(RANKS, -1)
