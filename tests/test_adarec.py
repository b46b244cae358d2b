"""ADARec's parts and the whole model: estimator, masks, schedule, denoiser, router, causality."""

from __future__ import annotations

import math

import pytest
import torch

from adarec.config import load_config
from adarec.model.build import build_model
from adarec.model.diffusion import (
    Denoiser,
    DepthController,
    HierarchicalDiffusion,
    level_mask,
    linear_alpha_bars,
)
from adarec.model.experts import ContentRouter, Gate, aggregate, prefix_mean, trajectory_contrast
from adarec.model.interface import Batch

ABLATIONS = {
    "full": [],
    "without ADC": ["adarec.controller=fixed", "adarec.fixed_depth=2"],
    "without HDA": ["adarec.denoise=false"],
    "ADC+HDA only": ["adarec.experts=1"],
    "without router": ["adarec.router=constant"],
    "without L_cont": ["adarec.cont_weight=0"],
    "HP-MoE only": ["adarec.max_depth=0", "adarec.fixed_depth=0"],
}


def _model(*overrides: str, n_items: int = 30):
    cfg = load_config(overrides=[
        "model.name=adarec", "model.hidden_size=16", "model.num_layers=1",
        "model.attn_dropout=0", "model.hidden_dropout=0", "intents.n_intents=4",
        "adarec.max_depth=4", "adarec.fixed_depth=4", *overrides,
    ])
    return build_model(cfg, n_items=n_items, max_len=12)


def _batch(n_items: int = 30, rows: int = 8, length: int = 12, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, n_items + 1, (rows, length), generator=g)
    lengths = torch.randint(2, length + 1, (rows,), generator=g)
    x[torch.arange(length)[None, :] < (length - lengths)[:, None]] = 0
    return x


def test_straight_through_gives_one_hot_forward_and_controller_gradients():
    torch.manual_seed(0)
    ctrl = DepthController(dim=8, max_depth=5, max_len=12).train()
    ids = _batch(rows=16)
    onehot = ctrl(torch.randn(16, 12, 8), ids).onehot  # (B, L, T+1)
    assert set(onehot.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(onehot.sum(-1), torch.ones(16, 12))
    (onehot * torch.arange(6.0)).sum().backward()
    assert ctrl.head.weight.grad.abs().sum() > 0
    assert ctrl.gru.weight_ih_l0.grad.abs().sum() > 0


def test_exploration_loss_is_negative_entropy():
    ctrl = DepthController(dim=4, max_depth=3, max_len=12)
    torch.nn.init.zeros_(ctrl.head.weight)
    torch.nn.init.zeros_(ctrl.head.bias)  # uniform over 4 depths: H = log 4
    expl = ctrl(torch.randn(2, 12, 4), _batch(rows=2)).expl
    assert expl.item() == pytest.approx(-math.log(4), abs=1e-6)


@pytest.mark.parametrize("depth", range(5))
def test_level_mask_matches_depth(depth):
    onehot = torch.nn.functional.one_hot(torch.tensor([depth]), 5).float()
    assert level_mask(onehot).tolist() == [[1.0] * (depth + 1) + [0.0] * (4 - depth)]


def test_noise_schedule_matches_closed_form():
    abar = linear_alpha_bars(50, 1e-4, 0.02)
    for k in (1, 2, 10, 50):
        expected = 1.0
        for j in range(k):
            expected *= 1 - (1e-4 + j * (0.02 - 1e-4) / 49)
        assert abar[k - 1].item() == pytest.approx(expected, rel=1e-6)


def test_denoiser_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    diff = HierarchicalDiffusion(denoiser=Denoiser(dim=8, max_depth=4),
                                 alpha_bars=linear_alpha_bars(4, 0.05, 0.3))
    e0, real = torch.randn(16, 6, 8), torch.ones(16, 6, dtype=torch.bool)
    mask = torch.ones(16, 6, 5)
    opt = torch.optim.Adam(diff.parameters(), lr=1e-2)
    losses = []
    for _ in range(150):
        torch.manual_seed(1)  # the same noise every step: a fixed regression problem
        deno = diff(e0, mask, real).deno
        opt.zero_grad()
        deno.backward()
        opt.step()
        losses.append(deno.item())
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[:10]) / 10


def test_zero_noise_levels_are_exact_without_denoiser_error():
    diff = HierarchicalDiffusion(denoiser=Denoiser(dim=4, max_depth=3),
                                 alpha_bars=linear_alpha_bars(50, 1e-4, 0.02)[:3]).eval()
    e0 = torch.randn(2, 5, 4)
    levels = diff(e0, torch.ones(2, 5, 4), torch.ones(2, 5, dtype=torch.bool)).levels
    assert levels.shape == (4, 2, 5, 4) and torch.equal(levels[0], e0)


def test_router_logits_per_level_and_position_and_they_depend_on_the_level():
    torch.manual_seed(0)
    router = ContentRouter(dim=8, max_depth=3)
    same = torch.randn(1, 5, 6, 8).expand(4, 5, 6, 8)  # one content on every level
    logits = router(same, _batch(rows=5, length=6) > 0)  # logits, not sigmoid(logits)
    assert logits.shape == (4, 5, 6)
    assert (logits[1:] - logits[0]).abs().min() > 0  # emb(k) alone tells the levels apart


def test_aggregate_is_the_weighted_mean_over_levels():
    out = torch.tensor([1.0, 2.0, 10.0]).view(3, 1, 1, 1)
    assert aggregate(out, torch.tensor([1.0, 3.0, 0.0]).view(3, 1, 1)).item() == 1.75
    # A tiny but real weight still gives its level, not a shrunk value (no epsilon offset).
    assert aggregate(out, torch.tensor([0.0, 1e-20, 0.0]).view(3, 1, 1)).item() == 2.0


def test_the_gate_mixes_each_dimension_by_sigmoid_of_the_coarse_side():
    gate = Gate(2)
    with torch.no_grad():
        gate.proj.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -2.0]]))
        gate.proj.bias.copy_(torch.tensor([0.5, 0.0]))
    z_fin, z_coar = torch.tensor([[4.0, 4.0]]), torch.tensor([[0.5, 1.0]])
    g = torch.sigmoid(torch.tensor([1.0, -2.0]))  # W z_coar + b = (1.0, -2.0)
    want = g * z_fin + (1 - g) * z_coar
    assert torch.allclose(gate(z_fin, z_coar), want, atol=1e-6)
    assert torch.allclose(gate(z_fin, z_fin), z_fin)  # a mix of equals


def test_prefix_mean_is_causal_mean_of_real_positions():
    x = torch.tensor([[[0.0], [2.0], [4.0], [6.0]]])
    real = torch.tensor([[False, True, True, True]])
    assert prefix_mean(x, real).squeeze().tolist()[1:] == [2.0, 3.0, 4.0]


def test_trajectory_contrast_counts_only_the_upper_half_of_each_trajectory():
    torch.manual_seed(0)
    pooled = torch.randn(5, 3, 4)  # T = 4
    depth = torch.tensor([0, 0, 0])  # depth 0: no pair counts
    assert trajectory_contrast(pooled, depth).item() == 0.0
    # Depth 1: only the pair (0, 1) counts; equal levels give a lower loss than random.
    same = pooled.clone()
    same[1] = same[0]
    assert trajectory_contrast(same, torch.tensor([1, 1, 1])) < trajectory_contrast(
        pooled, torch.tensor([1, 1, 1]))


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_every_ablation_trains_and_scores(name):
    torch.manual_seed(0)
    model = _model(*ABLATIONS[name])
    x = _batch()
    y = torch.where(x > 0, torch.randint(1, 31, x.shape), 0)
    model.before_training(x, seed=0)
    out = model.loss(Batch(x, y))
    out.total.backward()
    assert torch.isfinite(out.total)
    assert model.embedding.items.weight.grad.abs().sum() > 0
    model.eval()
    assert model.score(x).shape == (8, 31)


def test_whole_model_is_causal_on_real_positions():
    torch.manual_seed(0)
    model = _model().eval()
    x = _batch(rows=6)
    x2 = x.clone()
    x2[:, -1] = (x[:, -1] % 30) + 1  # change only the last item
    real = (x > 0)[:, :-1]
    diff = (model(x)[:, :-1] - model(x2)[:, :-1]).abs().amax(-1)
    assert diff[real].max() < 1e-6


def test_trimming_padding_columns_changes_no_score():
    torch.manual_seed(0)
    model = _model().eval()
    x = _batch(rows=6)
    x[:, :4] = 0
    assert torch.allclose(model.score(x), model.score(x[:, 4:]), atol=1e-5)


def test_inference_is_deterministic():
    """Whatever the global RNG holds: no noise by default, a fixed draw with ``seeded``."""
    x = _batch()
    torch.manual_seed(0)
    model = _model().eval()
    torch.manual_seed(0)
    seeded = _model("adarec.eval_noise=seeded").eval()  # the same weights
    scores = {}
    for name, m in (("zero", model), ("seeded", seeded)):
        torch.manual_seed(1)
        first = m.score(x)
        torch.manual_seed(2)
        assert torch.equal(first, m.score(x)), name
        scores[name] = first
    assert not torch.equal(scores["zero"], scores["seeded"])  # the seeded draw is not zero


def test_one_expert_ablation_shares_weights():
    model = _model("adarec.experts=1")
    assert model.coarse is model.fine


def test_packed_gru_matches_the_plain_gru_on_real_steps():
    from adarec.model.diffusion import run_gru

    torch.manual_seed(0)
    gru = torch.nn.GRU(6, 5, batch_first=True)
    x = torch.randn(4, 7, 6, requires_grad=True)
    lengths = torch.tensor([7, 1, 3, 0])
    plain = run_gru(gru, x)
    packed = run_gru(gru, x, lengths)
    real = torch.arange(7)[None, :] < lengths[:, None]
    torch.testing.assert_close(packed[real], plain[real])
    assert packed[~real & (lengths > 0)[:, None]].abs().sum() == 0
    (g_plain,) = torch.autograd.grad(plain[real].sum(), x)
    (g_packed,) = torch.autograd.grad(packed[real].sum(), x)
    torch.testing.assert_close(g_packed, g_plain)


@pytest.mark.parametrize("preset", ["adarec-beauty", "release-beauty"])
def test_packing_the_controller_gru_changes_no_loss_or_score(preset, monkeypatch):
    """Packed (CPU default) against unpacked GRU, whole model, eval mode, same draws."""
    import adarec.model.diffusion as diffusion
    import adarec.model.release as release
    from adarec.config import load_config
    from adarec.model.build import build_model
    from adarec.model.interface import Batch

    # The release's own GRU reads the padding (nothing to pack); its option packs.
    config = load_config(preset, overrides=["model.hidden_size=16", "intents.n_intents=4",
                                            "adarec.max_depth=3",
                                            "release.gru_reads_padding=false"])
    torch.manual_seed(0)
    model = build_model(config, n_items=20, max_len=12).eval()
    ids = torch.zeros(12, 12, dtype=torch.long)
    for i in range(12):
        ids[i, 11 - i:] = torch.arange(1, i + 2)
    targets = torch.roll(ids, -1, dims=1)
    targets[:, -1] = 7
    targets[ids == 0] = 0
    member = next(iter(getattr(model, "members", [model])))
    member.before_training(ids, 1)
    plain_gru = diffusion.run_gru
    outputs = []
    for packed in (True, False):
        if not packed:
            unpacked = lambda gru, x, lengths=None: plain_gru(gru, x)  # noqa: E731
            monkeypatch.setattr(diffusion, "run_gru", unpacked)
            monkeypatch.setattr(release, "run_gru", unpacked)
        torch.manual_seed(2)
        outputs.append((model.score(ids), member.loss(Batch(ids, targets)).total))
    torch.testing.assert_close(outputs[0][0], outputs[1][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outputs[0][1], outputs[1][1], atol=1e-5, rtol=1e-5)
