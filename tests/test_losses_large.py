"""Losses for large catalogues (docs/method.md#losses-for-large-catalogues): chunked exact
cross-entropy, sampled softmax with the logQ correction, gSASRec's gBCE."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from adarec.config import load_config
from adarec.model.build import build_model
from adarec.model.interface import Batch
from adarec.model.losses import (
    GBCE,
    FullSoftmaxCE,
    SampledSoftmax,
    chunked_cross_entropy,
    gbce_beta,
)


def _case(m: int = 37, n: int = 53, d: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(m, d, generator=g, dtype=torch.float64, requires_grad=True)
    items = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(1, n + 1, (m,), generator=g)
    y[::5] = 0  # padding positions, ignored
    return h, items, y


@pytest.mark.parametrize("chunk", [1, 7, 16, 53, 100])
def test_chunked_cross_entropy_equals_the_full_one_with_its_gradients(chunk: int):
    h, items, y = _case()
    full = F.cross_entropy(h @ items.T, y - 1, ignore_index=-1)
    gh, gi = torch.autograd.grad(full, (h, items))
    part = chunked_cross_entropy(h, items, y, chunk)
    ch, ci = torch.autograd.grad(part, (h, items))
    torch.testing.assert_close(part, full.to(part.dtype), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ch, gh, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(ci, gi, rtol=1e-6, atol=1e-8)


def test_chunked_cross_entropy_passes_gradcheck():
    h, items, y = _case(m=6, n=9, d=3, seed=1)
    weight_check = torch.autograd.gradcheck(
        lambda a, b: chunked_cross_entropy(a, b, y, 4).double(), (h, items))
    assert weight_check


def test_the_ce_loss_module_chunked_or_not_agrees_in_float32():
    torch.manual_seed(0)
    hidden = torch.randn(4, 6, 16)
    targets = torch.randint(0, 31, (4, 6))
    items = torch.randn(32, 16)  # row 0 padding, 30 items, one spare row
    whole = FullSoftmaxCE(30)(hidden, targets, items, targets)
    chunked = FullSoftmaxCE(30, chunk_items=7)(hidden, targets, items, targets)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)


def test_sampled_softmax_with_logq_has_the_full_softmax_gradient_in_expectation():
    """Monte Carlo: the average gradient over many draws of k negatives approaches the full
    softmax's; without the correction it does not."""
    torch.manual_seed(0)
    n, d = 20, 4
    h = torch.randn(1, 1, d, dtype=torch.float64, requires_grad=True)
    items = torch.randn(n + 1, d, dtype=torch.float64)
    items[3] = 0.8 * h.detach()[0, 0]  # a likely target, so the partition's weight matters
    targets = torch.tensor([[3]])
    full = F.cross_entropy(h[0] @ items[1:].T, targets[0] - 1)
    (want,) = torch.autograd.grad(full, h)
    loss = SampledSoftmax(n, negatives=400)
    draws = 300
    got = sum(torch.autograd.grad(loss(h, targets, items, targets), h)[0]
              for _ in range(draws)) / draws
    assert (got - want).norm() < 0.08 * want.norm(), (got, want)  # finite k: small bias

    bad = SampledSoftmax(n, negatives=400, logq=False)
    off = sum(torch.autograd.grad(bad(h, targets, items, targets), h)[0]
              for _ in range(20)) / 20
    assert (off - want).norm() > 0.3 * want.norm()  # 60 % off without the correction


def test_gbce_beta_follows_the_published_formula():
    # alpha = k / (n - 1); beta = alpha (t (1 - 1/alpha) + 1/alpha)
    assert gbce_beta(256, 1001, 0.0) == pytest.approx(1.0)
    assert gbce_beta(256, 1001, 1.0) == pytest.approx(256 / 1000)
    alpha = 256 / 1000
    assert gbce_beta(256, 1001, 0.75) == pytest.approx(alpha * (0.75 * (1 - 1 / alpha)
                                                                + 1 / alpha))
    assert gbce_beta(256, 1001, 0.75) == pytest.approx(0.4420)


def test_gbce_on_hand_computed_values(monkeypatch):
    """One position, target item 1, negatives 2 and 3 (fixed), 4 items, t = 0.5."""
    import adarec.model.losses as losses

    monkeypatch.setattr(losses, "_uniform_negatives",
                        lambda k, n, device: torch.tensor([2, 3]))
    h = torch.tensor([[[1.0, 0.0]]])
    items = torch.tensor([[0.0, 0.0], [2.0, 0.0], [-1.0, 0.0], [0.5, 1.0], [0.0, 0.0]])
    targets = torch.tensor([[1]])
    beta = (2 / 3) * (0.5 * (1 - 3 / 2) + 3 / 2)  # alpha = 2 / 3
    want = (-beta * math.log(1 / (1 + math.exp(-2.0)))
            - math.log(1 - 1 / (1 + math.exp(1.0)))
            - math.log(1 - 1 / (1 + math.exp(-0.5))))
    got = GBCE(4, negatives=2, t=0.5)(h, targets, items, targets)
    assert float(got) == pytest.approx(want, rel=1e-6)
    # A negative equal to the target does not count for it.
    monkeypatch.setattr(losses, "_uniform_negatives",
                        lambda k, n, device: torch.tensor([1, 3]))
    got = GBCE(4, negatives=2, t=0.5)(h, targets, items, targets)
    want_same = (-beta * math.log(1 / (1 + math.exp(-2.0)))
                 - math.log(1 - 1 / (1 + math.exp(-0.5))))
    assert float(got) == pytest.approx(want_same, rel=1e-6)


@pytest.mark.parametrize("setting", ["model.rec_loss=sampled_softmax", "model.rec_loss=gbce",
                                     "model.ce_chunk_items=7"])
def test_each_loss_trains_a_model_step(setting: str):
    config = load_config("sasrec-beauty", overrides=[setting, "model.negatives=16",
                                                     "model.hidden_size=16"])
    model = build_model(config, n_items=40, max_len=10)
    ids = torch.randint(1, 41, (5, 10))
    out = model.loss(Batch(ids, torch.roll(ids, -1, 1)))
    assert torch.isfinite(out.total)
    out.total.backward()
    assert model.embedding.items.weight.grad.abs().sum() > 0


def test_popularity_sampling_draws_by_count_and_its_logq_corrects_the_gradient():
    torch.manual_seed(0)
    n, d = 20, 4
    loss = SampledSoftmax(n, negatives=400, sampling="popularity")
    inputs = torch.tensor([[0, 1, 1, 1, 1, 2], [0, 0, 1, 3, 3, 5]])  # item 1 x5, 3 x2, ...
    loss.observe(inputs)
    assert loss.counts[:5].tolist() == [6.0, 2.0, 3.0, 1.0, 2.0]  # count + 1
    neg, log_kq = loss.draw(torch.device("cpu"))
    share = (neg == 1).float().mean()
    assert abs(float(share) - 6 / float(loss.counts.sum())) < 0.06
    torch.testing.assert_close(log_kq, (400 * loss.counts[neg - 1] / loss.counts.sum()).log())
    assert "counts" in loss.state_dict()  # kept, so a resumed run samples alike

    h = torch.randn(1, 1, d, dtype=torch.float64, requires_grad=True)
    items = torch.randn(n + 1, d, dtype=torch.float64)
    items[3] = 0.8 * h.detach()[0, 0]
    targets = torch.tensor([[3]])
    (want,) = torch.autograd.grad(F.cross_entropy(h[0] @ items[1:].T, targets[0] - 1), h)
    got = sum(torch.autograd.grad(loss(h, targets, items, targets), h)[0]
              for _ in range(300)) / 300
    assert (got - want).norm() < 0.08 * want.norm(), (got, want)


def test_a_model_with_popularity_sampling_counts_its_training_items():
    config = load_config("sasrec-beauty", overrides=[
        "model.rec_loss=sampled_softmax", "model.negative_sampling=popularity",
        "model.negatives=8", "model.hidden_size=16"])
    model = build_model(config, n_items=40, max_len=10)
    ids = torch.randint(1, 41, (5, 10))
    model.before_training(ids, seed=0)
    assert float(model.rec_loss.counts.sum()) == 40 + 50  # 50 interactions, +1 each item
    out = model.loss(Batch(ids, torch.roll(ids, -1, 1)))
    out.total.backward()
    assert torch.isfinite(out.total)
