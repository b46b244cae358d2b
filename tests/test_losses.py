"""Recommendation losses against hand computations on tiny examples."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from adarec.model.losses import FullSoftmaxCE, SampledBCE, rec_loss

N_ITEMS = 6
DIM = 4


def _example(spare_rows: int = 0, seed: int = 0):
    """hidden (2, 3, D), targets with padding, item table (1 + N_ITEMS + spare, D), inputs."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2, 3, DIM, generator=g, dtype=torch.float64)
    items = torch.randn(1 + N_ITEMS + spare_rows, DIM, generator=g, dtype=torch.float64)
    inputs = torch.tensor([[0, 2, 5], [1, 3, 4]])
    targets = torch.tensor([[0, 5, 6], [3, 4, 1]])  # (0, 0) is padding: not scored
    return hidden, targets, items, inputs


def _hand_ce(hidden, targets, items) -> torch.Tensor:
    """Mean over real positions of logsumexp over items 1..N_ITEMS minus the target logit."""
    terms = []
    for b in range(targets.shape[0]):
        for t in range(targets.shape[1]):
            y = int(targets[b, t])
            if y == 0:
                continue
            logits = items[1 : N_ITEMS + 1] @ hidden[b, t]  # (N_ITEMS,) real items only
            terms.append(torch.logsumexp(logits, 0) - logits[y - 1])
    return torch.stack(terms).mean()


def test_full_softmax_ce_matches_hand_computation():
    hidden, targets, items, inputs = _example()
    got = FullSoftmaxCE(N_ITEMS)(hidden, targets, items, inputs)
    torch.testing.assert_close(got.double(), _hand_ce(hidden, targets, items), rtol=1e-6, atol=0)
    # The same number from F.cross_entropy over the real items' columns only.
    real = targets > 0
    logits = hidden[real] @ items[1 : N_ITEMS + 1].T  # (M, N_ITEMS), column j = item j + 1
    expected = F.cross_entropy(logits, targets[real] - 1)
    torch.testing.assert_close(got.double(), expected, rtol=1e-6, atol=0)


def test_full_softmax_ce_ignores_padding_and_spare_columns():
    hidden, targets, items, inputs = _example(spare_rows=1)
    loss = FullSoftmaxCE(N_ITEMS)
    base = loss(hidden, targets, items, inputs)
    torch.testing.assert_close(base.double(), _hand_ce(hidden, targets, items), rtol=1e-6, atol=0)
    # Rows that are not real items may score anything: the loss does not move.
    boosted = items.clone()
    boosted[0] = 50 * hidden.mean((0, 1))
    boosted[N_ITEMS + 1] = 50 * hidden.mean((0, 1))
    torch.testing.assert_close(loss(hidden, targets, boosted, inputs), base, rtol=0, atol=1e-7)


def test_full_softmax_ce_ignores_padding_positions():
    hidden, targets, items, inputs = _example()
    loss = FullSoftmaxCE(N_ITEMS)
    changed = hidden.clone()
    changed[0, 0] = 100.0  # the padding target's position
    torch.testing.assert_close(
        loss(changed, targets, items, inputs), loss(hidden, targets, items, inputs)
    )


def test_rec_loss_factory():
    assert isinstance(rec_loss("ce", N_ITEMS), FullSoftmaxCE)
    assert isinstance(rec_loss("bce", N_ITEMS), SampledBCE)


def _random_rows(batch: int, length: int, n_items: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, n_items + 1, (batch, length), generator=g)


def test_negatives_are_real_items():
    n_items = 20
    inputs = _random_rows(64, 10, n_items, seed=0)
    targets = _random_rows(64, 10, n_items, seed=1)
    targets[:, :3] = 0  # padding positions get a (never used) negative too
    torch.manual_seed(0)
    neg = SampledBCE(n_items).sample_negatives(targets, inputs)
    assert neg.shape == targets.shape and neg.dtype == torch.int64
    assert int(neg.min()) >= 1 and int(neg.max()) <= n_items


def test_negatives_never_equal_the_target_even_when_the_redraws_run_out():
    # Three items and no redraws: a third of the first draws hit the target, and the final
    # guard alone must move them (to the next item id, cyclically).
    targets = _random_rows(128, 20, 3, seed=3)
    torch.manual_seed(1)
    neg = SampledBCE(3, redraws=0).sample_negatives(targets, torch.zeros_like(targets))
    assert not (neg == targets).any() and int(neg.min()) >= 1 and int(neg.max()) <= 3


def _collision_rate(neg: torch.Tensor, inputs: torch.Tensor) -> float:
    return float((neg[:, :, None] == inputs[:, None, :]).any(-1).double().mean())


def test_redraws_make_collisions_with_the_row_rare():
    n_items = 50
    # Each row holds 10 distinct items, so a uniform draw hits the row about 20% of the time.
    g = torch.Generator().manual_seed(4)
    inputs = torch.stack([torch.randperm(n_items, generator=g)[:10] + 1 for _ in range(256)])
    targets = torch.roll(inputs, -1, dims=1)  # next items: also members of the row
    torch.manual_seed(2)
    raw = SampledBCE(n_items, redraws=0).sample_negatives(targets, inputs)
    torch.manual_seed(2)
    default = SampledBCE(n_items).sample_negatives(targets, inputs)
    torch.manual_seed(2)
    many = SampledBCE(n_items, redraws=20).sample_negatives(targets, inputs)
    assert 0.1 < _collision_rate(raw, inputs) < 0.3
    assert _collision_rate(default, inputs) < 0.02
    assert _collision_rate(many, inputs) == 0.0


def test_negatives_never_equal_the_target_on_a_small_catalogue():
    n_items = 20
    inputs = _random_rows(64, 10, n_items, seed=0)
    targets = torch.roll(inputs, -1, dims=1)
    torch.manual_seed(0)
    neg = SampledBCE(n_items).sample_negatives(targets, inputs)
    assert not (neg == targets).any()


def _hand_bce(hidden, targets, items, neg) -> torch.Tensor:
    terms = []
    for b in range(targets.shape[0]):
        for t in range(targets.shape[1]):
            y = int(targets[b, t])
            if y == 0:
                continue
            pos_logit = hidden[b, t] @ items[y]
            neg_logit = hidden[b, t] @ items[int(neg[b, t])]
            p_pos, p_neg = torch.sigmoid(pos_logit), torch.sigmoid(neg_logit)
            terms.append(-torch.log(p_pos) - torch.log(1 - p_neg))
    return torch.stack(terms).mean()


def test_sampled_bce_matches_hand_computation_with_seeded_negatives():
    hidden, targets, items, inputs = _example(spare_rows=1)
    loss = SampledBCE(N_ITEMS)
    torch.manual_seed(123)
    neg = loss.sample_negatives(targets, inputs)
    torch.manual_seed(123)
    got = loss(hidden, targets, items, inputs)
    torch.testing.assert_close(
        got.double(), _hand_bce(hidden, targets, items, neg), rtol=1e-6, atol=0
    )


def test_sampled_bce_with_fixed_negatives(monkeypatch):
    hidden, targets, items, inputs = _example()
    neg = torch.tensor([[1, 1, 2], [2, 6, 5]])
    loss = SampledBCE(N_ITEMS)
    monkeypatch.setattr(loss, "sample_negatives", lambda t, i: neg)
    got = loss(hidden, targets, items, inputs)
    torch.testing.assert_close(
        got.double(), _hand_bce(hidden, targets, items, neg), rtol=1e-6, atol=0
    )
    # A padding position's hidden state and negative play no part.
    changed = hidden.clone()
    changed[0, 0] = 100.0
    torch.testing.assert_close(loss(changed, targets, items, inputs), got)


def test_gathered_and_masked_padding_give_the_same_losses():
    """The CPU path (gather real positions) and the GPU path (keep all, ignore padding)."""
    torch.manual_seed(0)
    hidden = torch.randn(4, 6, 8, requires_grad=True)
    items = torch.randn(12, 8)
    targets = torch.tensor([[0, 0, 3, 4, 5, 6], [0, 0, 0, 0, 1, 2], [7, 8, 9, 10, 11, 1],
                            [0, 0, 0, 0, 0, 4]])
    inputs = torch.roll(targets, 1, dims=1)
    for cls in (FullSoftmaxCE, SampledBCE):
        values, grads = [], []
        for gather in (True, False):
            torch.manual_seed(1)  # the same negatives for both
            loss = cls(11, gather_real=gather)(hidden, targets, items, inputs)
            (grad,) = torch.autograd.grad(loss, hidden)
            values.append(loss)
            grads.append(grad)
        torch.testing.assert_close(values[0], values[1])
        torch.testing.assert_close(grads[0], grads[1])
        assert grads[1][targets == 0].abs().sum() == 0  # padding positions get no gradient
