"""The original release's model: mixing weights, detached clustering, ensemble averaging."""

from __future__ import annotations

import pytest
import torch

from adarec.config import load_config
from adarec.model.build import build_model
from adarec.model.diffusion import linear_alpha_bars
from adarec.model.interface import Batch


def _ensemble(*overrides: str, group_cost: int | None = None):
    cfg = load_config("release-beauty", overrides=[
        "model.hidden_size=16", "intents.n_intents=4", "model.attn_dropout=0",
        "model.hidden_dropout=0", *overrides,
    ])
    return build_model(cfg, n_items=30, max_len=10, group_cost=group_cost)


def _batch(rows: int = 8):
    torch.manual_seed(0)
    x = torch.randint(1, 31, (rows, 10))
    x[:, :4] = 0
    return x, torch.where(x > 0, torch.randint(1, 31, x.shape), 0)


def test_two_members_with_their_own_depths_and_a_spare_item_row():
    model = _ensemble()
    assert len(model.members) == 2
    abar = linear_alpha_bars(50, 1e-4, 0.02)
    assert torch.equal(model.members[0].alpha_bars, abar[[3, 4]])  # depths 4, 5: steps 3, 4
    assert torch.equal(model.members[1].alpha_bars, abar[[8, 9]])
    assert model.members[0].item_table.shape[0] == 32  # n_items + 2
    assert model.members[0].item_table.data_ptr() != model.members[1].item_table.data_ptr()


def test_controller_mixes_with_softmax_weights_from_the_detached_input():
    member = _ensemble().members[0]
    x, _ = _batch()
    e0 = member.embedding(x)
    w = member.controller(e0, x)
    assert w.shape == (8, 2) and torch.allclose(w.sum(-1), torch.ones(8))
    w.sum().backward()
    assert member.embedding.items.weight.grad is None  # the controller reads E0 detached


def test_clustering_loss_reaches_only_the_centres():
    member = _ensemble().members[0]
    x, y = _batch()
    member.before_training(x, seed=0)
    member.loss_weights = {name: 0.0 for name in member.loss_weights} | {"cluster": 1.0}
    out = member.loss(Batch(x, y))
    assert set(out.parts) == {"rec", "rec_noised", "consistency", "expl", "instance",
                              "cluster", "intent"}
    out.total.backward()
    assert member.centres.centres.grad.abs().sum() > 0
    others = [p.grad for p in member.parameters() if p is not member.centres.centres]
    assert all(g is None or g.abs().sum() == 0 for g in others)


def test_ensemble_scores_are_the_mean_of_the_members():
    model = _ensemble().eval()
    x, _ = _batch()
    scores = model.score(x)
    assert scores.shape == (8, 32)
    expected = (model.members[0].score(x) + model.members[1].score(x)) / 2
    assert torch.allclose(scores, expected)


def _constant_noise(shape, like):
    return torch.full(shape, 0.5, dtype=like.dtype, device=like.device)


@pytest.mark.parametrize("buckets", [1, 3, 8])
def test_one_pass_gives_each_branch_what_it_would_get_alone(buckets, monkeypatch):
    """`passes`: clean rows, then noised rows, as if each branch ran by itself (eval mode,
    the same noise at every element), whole or in length groups: 3 groups over 7 widths
    mix widths in a group; 8 give each width its own, row 0 (clean) alone in one."""
    from adarec.model.encoder import attention_mask
    from adarec.model.release import ReleaseMember

    monkeypatch.setattr(ReleaseMember, "noise", staticmethod(_constant_noise))
    model = _ensemble(f"runtime.length_buckets={buckets}", group_cost=0).eval()
    member = model.members[0]
    member.alpha_bars.copy_(torch.tensor([0.3, 0.6]))  # the mixing weights matter
    torch.manual_seed(0)
    ids = torch.randint(1, 31, (29, 10))
    lengths = [8] + [1 + i % 6 for i in range(28)]  # 5 clean rows first, then 24 noised
    for row, n in enumerate(lengths):
        ids[row, : 10 - n] = 0
    out, w = member.passes(ids, n_clean=5)

    e0 = member.embedding(ids)
    mask = attention_mask(ids)
    w_ref = member.controller(e0[5:], ids[5:])
    ab = member.alpha_bars[:, None, None, None]
    mixed = (w_ref.T[:, :, None, None] * (ab.sqrt() * e0[5:] + (1 - ab).sqrt() * 0.5)).sum(0)
    real = ids > 0
    torch.testing.assert_close(out[:5][real[:5]],
                               member.transformer(e0[:5], mask[:5])[real[:5]],
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[5:][real[5:]], member.transformer(mixed, mask[5:])[real[5:]],
                               atol=1e-5, rtol=1e-5)
    assert torch.equal(w[:5], torch.zeros(5, 2))
    torch.testing.assert_close(w[5:], w_ref, atol=1e-6, rtol=1e-5)


def test_each_branch_reaches_its_own_losses(monkeypatch):
    """`loss` wires the one pass's rows to the losses: recommendation on the clean and the
    noised branch, their consistency, and the entropy of the inputs' (not the views') mix."""
    from adarec.model.encoder import attention_mask
    from adarec.model.release import ReleaseMember

    monkeypatch.setattr(ReleaseMember, "noise", staticmethod(_constant_noise))
    member = _ensemble("model.rec_loss=ce").eval().members[0]
    member.alpha_bars.copy_(torch.tensor([0.3, 0.6]))  # noise that moves the outputs far
    with torch.no_grad():
        member.item_table.mul_(50)  # logits far from uniform: losses that tell branches apart
    x, y = _batch()
    x[:3, :6] = 0  # some shorter rows
    y[x == 0] = 0
    parts = member.loss(Batch(x, y)).parts

    e0 = member.embedding(x)
    mask, real = attention_mask(x), x > 0
    w = member.controller(e0, x)
    ab = member.alpha_bars[:, None, None, None]
    mixed = (w.T[:, :, None, None] * (ab.sqrt() * e0 + (1 - ab).sqrt() * 0.5)).sum(0)
    clean, noisy = member.transformer(e0, mask), member.transformer(mixed, mask)
    expected = {
        "rec": member.rec_loss(clean, y, member.item_table, x),
        "rec_noised": member.rec_loss(noisy, y, member.item_table, x),
        "consistency": ((noisy - clean).pow(2).mean(-1) * real).sum() / real.sum(),
        "expl": (w * w.log()).sum(-1).mean(),
    }
    assert abs(parts["rec"] - parts["rec_noised"]) > 1e-3  # a swap would show
    for name, value in expected.items():
        torch.testing.assert_close(parts[name], value.detach(), atol=1e-5, rtol=1e-5)
