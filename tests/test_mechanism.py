"""ADARec's mechanism pinned by values (docs/method.md#what-the-mechanism-does-in-training):
numerics under bf16 autocast, train/eval parity, which parameters each loss trains, the
schedule's levels, the aggregation, the contrast's level range and what each ablation does."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from adarec.config import load_config
from adarec.model.build import build_model
from adarec.model.diffusion import (
    HierarchicalDiffusion,
    level_mask,
    linear_alpha_bars,
    span_alpha_bars,
)
from adarec.model.encoder import attention_mask
from adarec.model.experts import Gate, route, trajectory_contrast
from adarec.model.interface import Batch
from adarec.model.losses import weigh
from adarec.model.probes import depth_stats

N_ITEMS, LENGTH, T = 30, 12, 4


def _model(*overrides: str):
    cfg = load_config(overrides=[
        "model.name=adarec", "model.hidden_size=16", "model.num_layers=1",
        "model.attn_dropout=0", "model.hidden_dropout=0", "intents.n_intents=4",
        f"adarec.max_depth={T}", f"adarec.fixed_depth={T}", *overrides,
    ])
    torch.manual_seed(0)
    return build_model(cfg, n_items=N_ITEMS, max_len=LENGTH)


def _batch(rows: int = 8, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, N_ITEMS + 1, (rows, LENGTH), generator=g)
    lengths = torch.randint(2, LENGTH + 1, (rows,), generator=g)
    x[torch.arange(LENGTH)[None, :] < (LENGTH - lengths)[:, None]] = 0
    y = torch.where(x > 0, torch.randint(1, N_ITEMS + 1, x.shape, generator=g), 0)
    return Batch(x, y)


def _capture_router(model) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    model.router.register_forward_hook(lambda m, i, out: seen.append(out.detach()))
    return seen


# --- 1. numerics ------------------------------------------------------------------------------

def test_router_under_bf16_autocast_stays_fp32_and_never_rounds_to_one():
    """A few bf16-autocast training steps at a moderate router logit (about 8, g = 0.9997):
    the logits are fp32 and within a tight tolerance of the fp32 model's on the same draws,
    and the coarse side's weight ``1 - g`` stays positive (bf16 would round g to 1.0)."""
    model = _model("adarec.intents=false")
    model.router.mlp[-1].bias.data.fill_(8.0)
    seen = _capture_router(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = _batch()
    model.train()
    for step in range(3):
        torch.manual_seed(step)
        with torch.no_grad():
            model.loss(batch)  # fp32 reference, same weights and draws
        torch.manual_seed(step)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model.loss(batch)
        fp32, bf16 = seen[-2], seen[-1]
        assert bf16.dtype == torch.float32
        torch.testing.assert_close(bf16, fp32, atol=0.02, rtol=0)
        assert 7.0 < fp32.mean() < 9.0  # moderate logits
        coarse = torch.sigmoid(-bf16)  # what `route` gives the coarse side
        assert coarse.min() > 1e-5 and torch.sigmoid(bf16).max() < 1.0
        torch.testing.assert_close(coarse, torch.sigmoid(-fp32), rtol=0.03, atol=0)
        g0 = out.stats["router_1"]
        assert 0.999 < g0 < 1.0  # logged in fp32, not quantised
        opt.zero_grad()
        out.total.backward()
        opt.step()


def test_depth_one_hot_is_exact_under_bf16_autocast():
    model = _model().train()
    batch = _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        depth = model.controller(model.embedding(batch.inputs), batch.inputs)
    assert depth.onehot.dtype == torch.float32
    assert set(depth.onehot.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("autocast", [False, True])
def test_training_and_evaluation_compute_the_same_score(autocast, monkeypatch):
    """Dropout off, the same fixed noise and no Gumbel noise: the training path (the whole
    trajectory, every position) and the scoring path (last position only) agree; under
    bf16 autocast to bf16's precision."""
    # One group (no length grouping): both paths draw noise of the same shape.
    model = _model("adarec.eval_noise=seeded", "runtime.length_buckets=1")
    assert model.grouping is None
    ids = _batch().inputs
    fixed = torch.randn(T, *ids.shape, 16, generator=torch.Generator().manual_seed(5))
    monkeypatch.setattr(model.diffusion, "_noise", lambda shape, like: fixed.to(like.dtype))
    monkeypatch.setattr(model.controller, "_sample",
                        lambda logits: F.one_hot(logits.argmax(-1), T + 1).float())
    model.eval()
    score = model.score(ids)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        h = model.trajectory(ids).h[:, -1]
    train_score = h.float() @ model.item_table.T
    tol = 3e-2 if autocast else 1e-5
    torch.testing.assert_close(train_score, score, atol=tol * score.abs().max().item(), rtol=0)


# --- 2. which parameters each loss trains ----------------------------------------------------

GROUPS = ("embedding", "controller", "denoiser", "fine", "coarse", "router", "gate")


def _reached(model, loss: torch.Tensor) -> set[str]:
    """The parameter groups that ``loss``'s gradient reaches (any non-zero entry)."""
    parts = {"embedding": model.embedding, "controller": model.controller,
             "denoiser": model.diffusion.denoiser, "fine": model.fine, "coarse": model.coarse,
             "router": model.router, "gate": model.gate}
    names = [n for n in GROUPS if parts[n] is not None and list(parts[n].parameters())]
    params = [list(parts[n].parameters()) for n in names]
    grads = torch.autograd.grad(loss, [p for ps in params for p in ps], retain_graph=True,
                                allow_unused=True)
    reached, i = set(), 0
    for name, ps in zip(names, params, strict=True):
        if any(g is not None and g.abs().sum() > 0 for g in grads[i : i + len(ps)]):
            reached.add(name)
        i += len(ps)
    return reached


@pytest.mark.parametrize("mode", ["deno_only", "rec"])
def test_each_loss_reaches_exactly_its_parameters(mode):
    model = _model("adarec.intents=false", f"adarec.denoiser_grad={mode}").train()
    torch.manual_seed(0)
    losses, _ = model.losses(_batch())
    everything = {"embedding", "controller", "fine", "coarse", "router", "gate"}
    if mode == "deno_only":
        expected = {"rec": everything, "deno": {"denoiser"}, "cont": {"embedding", "coarse"},
                    "expl": {"embedding", "controller"}}
    else:
        expected = {"rec": everything | {"denoiser"}, "deno": {"embedding", "denoiser"},
                    "cont": {"embedding", "coarse", "denoiser"},
                    "expl": {"embedding", "controller"}}
    for name, want in expected.items():
        assert _reached(model, losses[name]) == want, name


def test_deno_is_logged_beside_its_predict_zero_baseline():
    model = _model().train()
    out = model.loss(_batch())
    assert 0.5 < out.stats["deno_zero"] < 1.5  # E[eps^2] = 1 over D = 16 dims
    torch.nn.init.zeros_(model.diffusion.denoiser.net[-1].weight)
    torch.nn.init.zeros_(model.diffusion.denoiser.net[-1].bias)
    torch.manual_seed(3)
    out = model.loss(_batch())  # a denoiser that predicts zero scores the baseline exactly
    torch.testing.assert_close(out.parts["deno"], out.stats["deno_zero"])


# --- 3. the schedule's levels ----------------------------------------------------------------

class _ConstantDenoiser(torch.nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        return torch.full_like(noisy, self.value)


@pytest.mark.parametrize("schedule", ["linear", "span"])
def test_levels_follow_the_formula(schedule, monkeypatch):
    t, d = 6, 5
    if schedule == "linear":
        ab = linear_alpha_bars(50, 1e-4, 0.02)[:t]
        expected_ab = [math.prod(1 - (1e-4 + j * (0.02 - 1e-4) / 49) for j in range(k))
                       for k in range(1, t + 1)]
    else:
        ab = span_alpha_bars(t, 0.3)
        expected_ab = [1 - (k / t) ** 2 * 0.7 for k in range(1, t + 1)]
    torch.testing.assert_close(ab, torch.tensor(expected_ab), rtol=1e-6, atol=0)
    diff = HierarchicalDiffusion(denoiser=_ConstantDenoiser(0.25), alpha_bars=ab).train()
    e0 = torch.randn(3, 4, d)
    eps = torch.randn(t, 3, 4, d)
    monkeypatch.setattr(diff, "_noise", lambda shape, like: eps)
    real = torch.ones(3, 4, dtype=torch.bool)
    real[0, 0] = False
    out = diff(e0, torch.ones(3, 4, t + 1), real)
    for k in range(1, t + 1):
        a = expected_ab[k - 1]
        noisy = math.sqrt(a) * e0 + math.sqrt(1 - a) * eps[k - 1]
        ehat = (noisy - math.sqrt(1 - a) * 0.25) / math.sqrt(a)
        torch.testing.assert_close(out.levels[k], ehat, rtol=1e-5, atol=1e-5)
        rel = (ehat - e0).norm(dim=-1) / e0.norm(dim=-1)
        torch.testing.assert_close(out.dist[k - 1], rel[real].mean(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.deno_zero, eps.pow(2).mean(-1)[:, real].mean())
    torch.testing.assert_close(diff.noise_std, (1 - torch.tensor(expected_ab)).sqrt())


def test_span_schedule_spaces_noise_evenly_to_its_target():
    std = (1 - span_alpha_bars(10, 0.25)).sqrt()
    torch.testing.assert_close(std, torch.arange(1, 11) / 10 * math.sqrt(0.75))


# --- 4. the depth histograms -----------------------------------------------------------------

def test_depth_histograms_count_rows_per_history_length_bucket():
    depth = F.one_hot(torch.tensor([0, 2, 2, 1, 2]), 3).float()
    lengths = torch.tensor([1, 3, 5, 8, 30])
    stats = depth_stats(depth, lengths)
    assert [stats[f"hist_len<=3_depth_{k}"].item() for k in range(3)] == [1, 0, 1]
    assert [stats[f"hist_len4-5_depth_{k}"].item() for k in range(3)] == [0, 0, 1]
    assert [stats[f"hist_len6-10_depth_{k}"].item() for k in range(3)] == [0, 1, 0]
    assert [stats[f"hist_len>10_depth_{k}"].item() for k in range(3)] == [0, 0, 1]
    assert stats["depth_2"].item() == pytest.approx(0.6)


# --- 6. aggregation and the contrast's range -------------------------------------------------

def _fused_by_hand(fine, coarse, logits, used, gate):
    """The paper's fusion, one user, position and level at a time."""
    n_levels, batch, length, dim = fine.shape
    out = torch.zeros(batch, length, dim)
    for b in range(batch):
        for i in range(length):
            num_f, den_f, num_c, den_c = torch.zeros(dim), 0.0, torch.zeros(dim), 0.0
            for k in range(n_levels):
                g = 1 / (1 + math.exp(-logits[k, b, i].item()))
                m = used[k, b, i].item()
                num_f += m * g * fine[k, b, i]
                den_f += m * g
                num_c += m * (1 - g) * coarse[k, b, i]
                den_c += m * (1 - g)
            z_fin, z_coar = num_f / den_f, num_c / den_c
            s = torch.sigmoid(gate.proj(z_coar))
            out[b, i] = s * z_fin + (1 - s) * z_coar
    return out


def test_route_matches_the_paper_and_a_swap_of_fine_and_coarse_fails():
    torch.manual_seed(0)
    fine, coarse = torch.randn(5, 3, 4, 6), torch.randn(5, 3, 4, 6) + 1.0
    logits = torch.randn(5, 3, 4) * 2
    depths = torch.tensor([[0, 2, 4, 1], [3, 3, 0, 4], [1, 2, 3, 4]])  # (B, L)
    used = level_mask(F.one_hot(depths, 5).float()).permute(2, 0, 1)  # (T+1, B, L)
    gate = Gate(6)
    with torch.no_grad():
        expected = _fused_by_hand(fine, coarse, logits, used, gate)
        torch.testing.assert_close(route(fine, coarse, logits, used, gate), expected,
                                   rtol=1e-5, atol=1e-5)
        swapped = route(coarse, fine, logits, used, gate)
    assert not torch.allclose(swapped, expected, atol=1e-2)


def test_the_model_fuses_its_fine_and_coarse_experts_as_the_paper_says():
    model = _model().eval()
    ids = _batch().inputs
    with torch.no_grad():
        f = model._fused(ids, last_only=False)
        levels = f.levels.levels  # (T+1, B, L, D)
        attn = attention_mask(ids)
        fine = torch.stack([model.fine(lv, attn) for lv in levels])
        coarse = torch.stack([model.coarse(lv, attn) for lv in levels])
        used = level_mask(f.depth.onehot).permute(2, 0, 1)
        expected = _fused_by_hand(fine, coarse, f.router, used, model.gate)
        swapped = _fused_by_hand(coarse, fine, f.router, used, model.gate)
    real = ids > 0
    torch.testing.assert_close(f.h[real], expected[real], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(f.h[real], swapped[real], atol=1e-3)


def test_trajectory_contrast_counts_levels_half_depth_to_depth_at_larger_depths():
    torch.manual_seed(0)
    t, tau = 10, 0.07
    pooled = torch.randn(t + 1, 4, 8)
    depth = torch.tensor([10, 7, 3, 1])
    z = F.normalize(pooled, dim=-1)
    terms = []
    for b, d in enumerate(depth.tolist()):
        for k in range(d // 2, d):  # levels floor(d/2) .. d-1 paired with the next
            logits = z[k, b] @ z[k + 1].T / tau
            terms.append(-logits.log_softmax(-1)[b])
    expected = torch.stack(terms).mean()
    assert len(terms) == 5 + 4 + 2 + 1
    torch.testing.assert_close(trajectory_contrast(pooled, depth, tau), expected)


# --- 6. each ablation changes what it claims -------------------------------------------------

def _total_grad(model, losses, weights) -> torch.Tensor:
    total = weigh(losses, weights).total
    grads = torch.autograd.grad(total, list(model.parameters()), retain_graph=True,
                                allow_unused=True)
    return torch.cat([g.flatten() for g in grads if g is not None])


@pytest.mark.parametrize("cont_weight", [0.0, 0.1])
def test_cont_weight_zero_removes_exactly_the_contrast_gradient(cont_weight):
    model = _model("adarec.intents=false", f"adarec.cont_weight={cont_weight}").train()
    torch.manual_seed(0)
    losses, _ = model.losses(_batch())
    assert losses["cont"] > 0  # the loss itself is still computed and logged
    without = {**model.loss_weights, "cont": 0.0}
    same = torch.allclose(_total_grad(model, losses, model.loss_weights),
                          _total_grad(model, losses, without))
    assert same == (cont_weight == 0.0)


def test_without_adc_every_user_gets_the_fixed_depth():
    model = _model("adarec.controller=fixed", "adarec.fixed_depth=2").train()
    out = model.loss(_batch())
    assert list(model.controller.parameters()) == []
    assert [out.stats[f"depth_{k}"].item() for k in range(T + 1)] == [0, 0, 1, 0, 0]
    assert out.parts["expl"] == 0


def test_without_hda_levels_are_copies_of_e0():
    model = _model("adarec.denoise=false").train()
    out = model.loss(_batch())
    assert model.diffusion.denoiser is None and out.parts["deno"] == 0
    assert all(out.stats[f"level_dist_{k}"] == 0 for k in range(1, T + 1))
    assert all(out.stats[f"noise_std_{k}"] == 0 for k in range(1, T + 1))
    full = _model().train().loss(_batch())
    assert all(full.stats[f"level_dist_{k}"] > 0 for k in range(1, T + 1))


def test_one_expert_fuses_the_mean_of_the_used_levels():
    model = _model("adarec.experts=1").eval()
    ids = _batch().inputs
    with torch.no_grad():
        f = model._fused(ids, last_only=False)
        out = torch.stack([model.fine(lv, attention_mask(ids)) for lv in f.levels.levels])
        used = level_mask(f.depth.onehot).permute(2, 0, 1).unsqueeze(-1)
        mean = (out * used).sum(0) / used.sum(0)
    torch.testing.assert_close(f.h, model.gate(mean, mean), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(f.h, mean, rtol=1e-5, atol=1e-5)  # a mix of equals


def test_constant_router_gives_one_half_everywhere():
    model = _model("adarec.router=constant").train()
    out = model.loss(_batch())
    assert list(model.router.parameters()) == []
    assert all(out.stats[f"router_{k}"] == 0.5 for k in range(T + 1)
               if out.stats[f"depth_{k}"] > 0 or k == 0)
    full = _model().train().loss(_batch())
    assert any(abs(full.stats[f"router_{k}"] - 0.5) > 1e-4 for k in range(T + 1))


def test_a_router_value_common_to_all_levels_changes_nothing():
    # Each side is normalised by its own weights, so a g shared by the levels cancels:
    # g = 0.9 and g = 0.1 fuse the same h; only differences between levels matter.
    torch.manual_seed(0)
    fine, coarse = torch.randn(5, 3, 4, 6), torch.randn(5, 3, 4, 6) + 1.0
    depths = torch.tensor([[0, 2, 4, 1], [3, 3, 0, 4], [1, 2, 3, 4]])
    used = level_mask(F.one_hot(depths, 5).float()).permute(2, 0, 1)
    gate = Gate(6)
    with torch.no_grad():
        high = route(fine, coarse, torch.full((5, 3, 4), 2.2), used, gate)
        low = route(fine, coarse, torch.full((5, 3, 4), -2.2), used, gate)
        varied = torch.full((5, 3, 4), 2.2)
        varied[1] = -2.2
        other = route(fine, coarse, varied, used, gate)
    torch.testing.assert_close(high, low, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(other, high, atol=1e-2)
