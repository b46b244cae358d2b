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


def test_the_controller_keeps_pytorch_s_initialisation_as_in_the_release():
    """The release applies N(0, 0.02) before it builds the controller: the length table is
    N(0, 1) and the head uniform within 1/sqrt(2D), bias included; the rest is N(0, 0.02)."""
    torch.manual_seed(0)
    model = _ensemble("model.hidden_size=64")
    for member in model.members:
        table, head = member.controller.length_embedding.weight, member.controller.head
        assert 0.9 < table.std().item() < 1.1  # 513 x 64 draws of N(0, 1)
        bound = 1 / 128 ** 0.5
        assert bound / 2 < head.weight.abs().max().item() <= bound  # 2 x 128 draws
        assert 0 < head.bias.abs().min().item() and head.bias.abs().max().item() <= bound
        encoder_linear = next(m for m in member.transformer.modules()
                              if isinstance(m, torch.nn.Linear))
        assert 0.015 < encoder_linear.weight.std().item() < 0.025


def test_controller_mixes_with_softmax_weights_from_the_detached_input():
    member = _ensemble().members[0]
    x, _ = _batch()
    e0 = member.embedding(x)
    n = (x > 0).sum(1)
    w = member.controller(e0, n, n)
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
    """`passes`: clean rows, their noised twins (the clean rows' own embedding, noised), then
    noised views, as if each branch ran by itself (eval mode, the same noise at every
    element), whole or in length groups: 3 groups over 7 widths mix widths in a group; 8
    give each width its own. The GRU reads every row at its full width (max_len 10)."""
    from adarec.model.encoder import attention_mask
    from adarec.model.release import ReleaseMember

    monkeypatch.setattr(ReleaseMember, "noise", staticmethod(_constant_noise))
    model = _ensemble(f"runtime.length_buckets={buckets}", group_cost=0).eval()
    member = model.members[0]
    member.alpha_bars.copy_(torch.tensor([0.3, 0.6]))  # the mixing weights matter
    torch.manual_seed(0)
    ids = torch.randint(1, 31, (24, 8))  # a batch trimmed to width 8
    for row, n in enumerate([8, 3, 1, 5] + [1 + i % 6 for i in range(20)]):
        ids[row, : 8 - n] = 0
    ids = torch.cat([ids[:4], ids])  # 4 clean rows, their 4 twins, 20 views
    raw = torch.arange(28) + 40  # the lengths the controller embeds
    raw[4:8] = raw[:4]
    out, w = member.passes(ids, n_clean=4, lengths=raw)

    keep = torch.cat([torch.arange(4), torch.arange(8, 28)])
    e0 = member.embedding(ids[keep])
    e_full = member.embedding(torch.nn.functional.pad(ids[keep], (2, 0)))
    torch.testing.assert_close(e_full[:, 2:], e0)
    w_ref = member.controller(e_full, (ids[keep] > 0).sum(1), raw[keep])
    ab = member.alpha_bars[:, None, None, None]
    mixed = (w_ref.T[:, :, None, None] * (ab.sqrt() * e0 + (1 - ab).sqrt() * 0.5)).sum(0)
    mask, real = attention_mask(ids), ids > 0
    torch.testing.assert_close(out[:4][real[:4]],
                               member.transformer(e0[:4], mask[:4])[real[:4]],
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[4:][real[4:]], member.transformer(mixed, mask[4:])[real[4:]],
                               atol=1e-5, rtol=1e-5)
    assert torch.equal(w[:4], torch.zeros(4, 2))
    torch.testing.assert_close(w[4:], w_ref, atol=1e-6, rtol=1e-5)


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
    w = member.controller(e0, real.sum(1), real.sum(1))
    ab = member.alpha_bars[:, None, None, None]
    mixed = (w.T[:, :, None, None] * (ab.sqrt() * e0 + (1 - ab).sqrt() * 0.5)).sum(0)
    clean, noisy = member.transformer(e0, mask), member.transformer(mixed, mask)
    expected = {
        "rec": member.rec_loss(clean, y, member.item_table, x),
        "rec_noised": member.rec_loss(noisy, y, member.item_table, x),
        "consistency": ((noisy - clean).pow(2).sum(-1) * real).sum() / real.sum(),
        "expl": (w * w.log()).sum(-1).mean(),
    }
    assert abs(parts["rec"] - parts["rec_noised"]) > 1e-3  # a swap would show
    for name, value in expected.items():
        torch.testing.assert_close(parts[name], value.detach(), atol=1e-5, rtol=1e-5)


# Issue 21: each difference from the released code, pinned (docs/release.md).


def _no_inner_dropout(member) -> None:
    """Dropout off inside the encoder only: the embedding keeps its own (p = 0.5)."""
    for m in member.transformer.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if hasattr(m, "dropout") and isinstance(m.dropout, float):
            m.dropout = 0.0


def test_consistency_is_a_sum_over_d_per_real_position():
    from adarec.model.release import consistency_loss

    noisy = torch.tensor([[[1.0, 2.0], [5.0, 5.0]]])  # (1, 2, 2); position 1 is padding
    real = torch.tensor([[True, False]])
    # (1^2 + 2^2) / 1 real position = 5 (a mean over D would give 2.5)
    assert consistency_loss(noisy, torch.zeros_like(noisy), real).item() == 5.0


def test_length_embedding_has_513_rows_and_embeds_the_given_length():
    from adarec.model.release import ReleaseController

    c = ReleaseController(dim=2)
    assert c.length_embedding.num_embeddings == 513  # the release's, whatever max_len
    with torch.no_grad():
        for p in c.gru.parameters():
            p.zero_()  # GRU state stays 0: only the length embedding reaches the head
        c.length_embedding.weight.zero_()
        c.length_embedding.weight[70] = torch.tensor([1.0, 0.0])
        c.length_embedding.weight[512] = torch.tensor([0.0, 2.0])
        c.head.weight.copy_(torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]))
        c.head.bias.zero_()
    e = torch.randn(3, 4, 2)
    w = c(e, torch.tensor([4, 4, 4]), torch.tensor([70, 600, 3]))  # 600 clips to 512
    e1 = torch.e
    expected = torch.tensor([[e1 / (e1 + 1), 1 / (e1 + 1)], [1 / (1 + e1**2), e1**2 / (1 + e1**2)],
                             [0.5, 0.5]])
    torch.testing.assert_close(w, expected)


def test_member_embeds_the_batch_lengths_for_inputs_and_real_counts_for_views():
    # No dropout; one length group: one controller call for the whole batch.
    member = _ensemble("runtime.length_buckets=1").members[0]
    seen = {}
    forward = member.controller.forward

    def spy(e0, visible, lengths):
        seen.update(e0=e0, visible=visible, lengths=lengths)
        return forward(e0, visible, lengths)

    member.controller.forward = spy
    x, y = _batch()
    x, y = x[:, 2:], y[:, 2:]  # a trimmed batch: width 8 of max_len 10
    member.loss(Batch(x, y, lengths=torch.full((8,), 70)))
    assert seen["e0"].shape[1] == 10  # the GRU reads every column, left padding included:
    padding = member.embedding(torch.zeros(1, 10, dtype=torch.long))[0, :4]  # (4 per row)
    torch.testing.assert_close(seen["e0"][:8, :4], padding.expand(8, 4, 16))
    assert seen["lengths"][:8].tolist() == [70] * 8  # the raw lengths, not 6
    views = seen["lengths"][8:]
    assert len(views) == 4 * 8 and views.max() <= 6  # views: their real items, counted


def test_the_gru_reads_the_left_padding_or_only_the_real_items():
    from adarec.model.release import last_state_all_steps, last_state_real_steps

    torch.manual_seed(0)
    gru = torch.nn.GRU(3, 3, batch_first=True)
    e = torch.randn(2, 5, 3)  # row 0: 2 real items (last 2 columns); row 1: 5
    visible = torch.tensor([2, 5])
    _, h_all = gru(e)  # the release: `_, last_hidden = self.gru(sequence_emb)`
    torch.testing.assert_close(last_state_all_steps(gru, e, visible), h_all[0])
    _, h_real = gru(e[:1, -2:])
    torch.testing.assert_close(last_state_real_steps(gru, e, visible)[0], h_real[0, 0])
    torch.testing.assert_close(last_state_real_steps(gru, e, visible)[1], h_all[0, 1])
    assert not torch.allclose(h_real[0, 0], h_all[0, 0])  # the padding changes the state


def test_the_noised_branch_noises_the_clean_branch_s_own_dropout_masked_embedding(monkeypatch):
    """With no noise (alpha_bar = 1) and no dropout inside the encoder, the noised branch is
    the clean one exactly, although the embedding drops half its entries: one mask, shared."""
    from adarec.model.release import ReleaseMember

    monkeypatch.setattr(ReleaseMember, "noise", staticmethod(lambda s, like: like.new_zeros(s)))
    member = _ensemble("model.hidden_dropout=0.5").members[0].train()
    _no_inner_dropout(member)
    member.alpha_bars.fill_(1.0)
    x, y = _batch()
    parts = member.loss(Batch(x, y, negatives=torch.where(y > 0, 31, 0))).parts
    assert parts["consistency"].item() == pytest.approx(0.0, abs=1e-10)  # mix weights: 1 +- ulp
    assert parts["rec"].item() == pytest.approx(parts["rec_noised"].item(), abs=1e-6)


@pytest.mark.parametrize("view_passes", [1, 2])
def test_the_views_run_once_per_loss_with_their_own_dropout(view_passes):
    member = _ensemble("model.hidden_dropout=0.5", f"release.view_passes={view_passes}",
                       "runtime.length_buckets=1").members[0].train()  # one encoder call
    rows = []
    forward = member.transformer.forward

    def spy(x, mask, last_only=False):
        out = forward(x, mask, last_only)
        rows.append(out)
        return out

    member.transformer.forward = spy
    x, y = _batch()
    member.loss(Batch(x, y))
    (out,) = rows  # one encoder call for every pass
    assert out.shape[0] == (2 + 2 * view_passes) * 8  # clean, noised, 2 views per pass
    if view_passes == 2:  # the same views, embedded, noised and encoded again
        first, second = out[16:32], out[32:48]
        assert not torch.allclose(first, second)


def test_the_intent_loss_masks_same_intent_negatives():
    """With one intent centre every pair shares its intent: only positives are left, so the
    release's intent loss is 0 exactly (a plain InfoNCE would be about log(2B - 1))."""
    member = _ensemble("intents.n_intents=1").members[0]
    x, y = _batch()  # (one centre: every sequence's nearest, k-means or not)
    assert member.loss(Batch(x, y)).parts["intent"].item() == 0.0


def test_both_branches_use_the_batch_s_negatives():
    member = _ensemble().members[0]
    got = []
    forward = member.rec_loss.forward

    def spy(hidden, targets, items, inputs, negatives=None):
        got.append(negatives)
        return forward(hidden, targets, items, inputs, negatives)

    member.rec_loss.forward = spy
    x, y = _batch()
    neg = torch.where(y > 0, 31, 0)  # the spare row n_items + 1, which the release can draw
    member.loss(Batch(x, y, negatives=neg))
    assert len(got) == 2 and all(g is neg for g in got)


def test_the_release_draws_its_negatives_on_the_data_side():
    from adarec.data.load import DataInfo
    from adarec.data.sequences import Sequences
    from adarec.data.splits import build_splits
    from adarec.train import make_batch, negatives_high

    info = DataInfo(n_users=2, n_items=30, n_interactions=9, max_len=10, source="")
    assert negatives_high(load_config("release-beauty"), info) == 32  # 1..31 = 1..n + 1
    assert negatives_high(load_config("elcrec-beauty"), info) is None  # the loss draws
    train = build_splits(Sequences.from_lists([[1, 2, 3, 4, 5], [3, 1, 2, 3]]), 10).train
    neg = torch.arange(20).view(2, 10)
    batch = make_batch(train, torch.tensor([1, 0]), neg, trim=True)
    assert batch.inputs.tolist() == [[0, 3], [1, 2]]  # trimmed to the longest row
    assert batch.negatives.tolist() == [[18, 19], [8, 9]]  # cut the same way
    assert batch.lengths.tolist() == [1, 2]


def test_members_train_on_the_same_batches_and_negatives_but_their_own_views(tmp_path,
                                                                             monkeypatch):
    """docs/release.md: the release steps both members in lockstep on one batch; here they
    train one after the other, and the batch generator restarts from ``train.seed`` for
    each, so both see the same batch order and negatives. Views are drawn per member."""
    from adarec.model import release
    from adarec.train import fit

    seen: dict[int, list] = {}  # member -> its steps, in order
    step: dict = {}  # the step under way, which the views are added to
    loss = release.ReleaseMember.loss
    augment = release.random_augment

    def spy_loss(self, batch):
        step.clear()
        step.update(inputs=batch.inputs.clone(), negatives=batch.negatives.clone(), views=[])
        seen.setdefault(id(self), []).append(dict(step))
        return loss(self, batch)

    def spy_augment(inputs, *args, **kwargs):
        out = augment(inputs, *args, **kwargs)
        step["views"].append(out.clone())
        return out

    monkeypatch.setattr(release.ReleaseMember, "loss", spy_loss)
    monkeypatch.setattr(release, "random_augment", spy_augment)
    config = load_config("release-beauty", overrides=[
        "data.dataset=synthetic", "data.synthetic_users=150", "data.synthetic_items=60",
        "model.hidden_size=16", "train.batch_size=64", "intents.n_intents=8",
        "train.max_epochs=1", f"output_dir={tmp_path}"])
    fit(config, progress=False)
    first, second = seen.values()
    assert len(first) == len(second) == 3  # 150 rows in batches of 64
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a["inputs"], b["inputs"])
        assert torch.equal(a["negatives"], b["negatives"])
        assert not all(torch.equal(x, y) for x, y in zip(a["views"], b["views"], strict=True))
