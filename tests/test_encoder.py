"""SASRec's encoder behaviour: shapes, causality, padding, trim invariance, shared item table.

The model is built the way a run builds it (`build_model` from a config), small, with dropout
0 and in eval mode, so every forward pass is deterministic.
"""

from __future__ import annotations

import pytest
import torch

from adarec.config import load_config
from adarec.data.splits import left_pad, trim_left
from adarec.model.build import build_model
from adarec.model.encoder import Transformer, attention_mask
from adarec.model.grouping import LengthGrouping

N_ITEMS = 30
MAX_LEN = 20
DIM = 16


def _model(max_len: int = MAX_LEN, layers: int = 2) -> torch.nn.Module:
    config = load_config(
        overrides=[
            "model.name=sasrec",
            f"model.hidden_size={DIM}",
            f"model.num_layers={layers}",
            "model.num_heads=2",
            "model.attn_dropout=0",
            "model.hidden_dropout=0",
        ]
    )
    torch.manual_seed(0)
    return build_model(config, n_items=N_ITEMS, max_len=max_len).eval()


def _batch(lengths: list[int], width: int, seed: int = 0) -> torch.Tensor:
    """Left-padded (B, width) rows of random items 1..N_ITEMS with the given lengths."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.zeros(len(lengths), width, dtype=torch.int64)
    for r, n in enumerate(lengths):
        if n:
            rows[r, width - n :] = torch.randint(1, N_ITEMS + 1, (n,), generator=g)
    return rows


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return _model()


@torch.no_grad()
def test_shapes(model):
    x = _batch([3, 20, 1, 7], MAX_LEN)
    hidden = model(x)
    assert hidden.shape == (4, MAX_LEN, DIM)
    scores = model.score(x)
    assert scores.shape[0] == 4 and scores.shape[1] >= N_ITEMS + 1
    # Shorter inputs than max_len are fine (positions count from the right).
    assert model(x[:, -5:]).shape == (4, 5, DIM)


@torch.no_grad()
def test_causality_later_items_never_change_earlier_outputs(model):
    lengths = [20, 12, 6, 2]  # rows 1..3 carry left padding
    x = _batch(lengths, MAX_LEN)
    base = model(x)
    for pos in range(1, MAX_LEN):
        changed = x.clone()
        real = changed[:, pos] > 0  # only real items change: the input stays left-padded
        changed[real, pos] = changed[real, pos] % N_ITEMS + 1  # a different real item
        out = model(changed)
        torch.testing.assert_close(out[:, :pos], base[:, :pos], rtol=0, atol=1e-6)
        # The change is visible at its own position (the check above is not vacuous).
        assert not torch.allclose(out[real, pos], base[real, pos], atol=1e-4)


@torch.no_grad()
def test_causality_holds_through_a_deeper_stack():
    model = _model(layers=3)
    x = _batch([20, 9], MAX_LEN, seed=3)
    base = model(x)
    changed = x.clone()
    changed[:, -1] = changed[:, -1] % N_ITEMS + 1
    torch.testing.assert_close(model(changed)[:, :-1], base[:, :-1], rtol=0, atol=1e-6)


@torch.no_grad()
def test_padding_rows_and_positions_are_finite(model):
    x = _batch([0, 1, 5, 0], MAX_LEN)  # two all-padding rows
    hidden, scores = model(x), model.score(x)
    assert torch.isfinite(hidden).all()
    assert torch.isfinite(scores).all()


@torch.no_grad()
def test_trim_invariance_of_scores(model):
    x = _batch([4, 7, 2, 1], MAX_LEN)  # 13 leading all-padding columns
    (trimmed,) = trim_left(x)
    assert trimmed.shape[1] == 7
    torch.testing.assert_close(model.score(trimmed), model.score(x), rtol=0, atol=1e-5)
    torch.testing.assert_close(model(trimmed), model(x)[:, -7:], rtol=0, atol=1e-5)


@torch.no_grad()
def test_outputs_do_not_depend_on_how_much_left_padding_a_batch_has(model):
    x10 = _batch([10, 6, 3, 1], 10)
    x20 = left_pad(x10, 20)
    assert x20.shape == (4, 20)
    h10, h20 = model(x10), model(x20)[:, -10:]
    real = x10 > 0
    torch.testing.assert_close(h20[real], h10[real], rtol=0, atol=1e-5)
    torch.testing.assert_close(model.score(x20), model.score(x10), rtol=0, atol=1e-5)


@torch.no_grad()
def test_batch_neighbours_do_not_leak(model):
    """A row's output depends on nothing but that row (no mixing across the batch)."""
    x = _batch([8, 3, 12], MAX_LEN, seed=5)
    alone = torch.cat([model.score(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(model.score(x), alone, rtol=0, atol=1e-5)


@torch.no_grad()
def test_scores_use_the_shared_item_table(model):
    x = _batch([5, 9], MAX_LEN, seed=1)
    table = model.embedding.items.weight
    assert model.item_table is table
    expected = model(x)[:, -1] @ table.T
    torch.testing.assert_close(model.score(x), expected, rtol=0, atol=1e-6)
    assert model.score(x).shape[1] == table.shape[0] == N_ITEMS + 1


def test_the_shared_table_gets_gradient_from_the_output_side():
    """Scores back-propagate into the input embedding table (one table, not two)."""
    model = _model()
    x = _batch([5], MAX_LEN, seed=2)
    unseen = sorted(set(range(1, N_ITEMS + 1)) - set(x.flatten().tolist()))[0]
    model.score(x)[0, unseen].backward()
    grad = model.embedding.items.weight.grad
    assert grad is not None and grad[unseen].abs().sum() > 0


def test_trim_left_never_cuts_a_column_that_holds_an_item():
    x = torch.tensor([[0, 5, 0, 7], [0, 0, 0, 3]])
    (trimmed,) = trim_left(x)
    assert trimmed.tolist() == [[5, 0, 7], [0, 0, 3]]


def _rows_with_holes() -> torch.Tensor:
    """Right-aligned rows of lengths 1..12 in a width of 12, one with a masked hole."""
    ids = torch.zeros(12, 12, dtype=torch.long)
    for i in range(12):
        ids[i, 12 - (i + 1):] = torch.arange(1, i + 2)
    ids[11, 3] = 0  # a hole inside a real row (the mask augmentation does this)
    return ids


@pytest.mark.parametrize("buckets", [2, 5, 12, 30])
def test_length_buckets_give_the_same_real_outputs(buckets: int) -> None:
    torch.manual_seed(0)
    enc = Transformer(dim=16, n_layers=2, n_heads=2, attn_dropout=0.0, hidden_dropout=0.0).eval()
    ids = _rows_with_holes()
    x = torch.randn(12, 12, 16, requires_grad=True)
    mask = attention_mask(ids)
    enc.grouping = None
    whole = enc(x, mask)
    enc.grouping = LengthGrouping(buckets, 0)  # split wherever it saves a position
    grouped = enc(x, mask)
    visible = mask[:, 0, -1, :].int().cummax(-1).values.bool()  # from the first visible key on
    torch.testing.assert_close(grouped[visible], whole[visible], atol=1e-5, rtol=1e-5)
    # Padding left of a group's width is not computed (zeros); nothing reads it.
    assert (grouped[~visible] == 0).any()
    (g_whole,) = torch.autograd.grad(whole[visible].sum(), x)
    (g_grouped,) = torch.autograd.grad(grouped[visible].sum(), x)
    torch.testing.assert_close(g_grouped, g_whole, atol=1e-5, rtol=1e-5)


def _built(preset: str, overrides: list[str], buckets: int):
    """The same weights (seed 0) with at most ``buckets`` length groups, each group free
    (tiny rows: split wherever it saves a position)."""
    config = load_config(preset, overrides=[*overrides, f"runtime.length_buckets={buckets}"])
    torch.manual_seed(0)
    return build_model(config, n_items=20, max_len=12, group_cost=0).eval()


@pytest.mark.parametrize("preset", ["default", "elcrec-beauty", "adarec-beauty", "release-beauty"])
def test_length_buckets_leave_every_model_unchanged(preset: str, monkeypatch) -> None:
    """Scores and (eval-mode, same random draws) losses with and without length groups."""
    from adarec.model.interface import Batch

    overrides = ["model.hidden_size=16", "intents.n_intents=4", "adarec.max_depth=3",
                 "model.hidden_dropout=0.0", "model.attn_dropout=0.0", "model.rec_loss=ce"]
    ids = _rows_with_holes()
    ids[11, 3] = 5
    targets = torch.roll(ids, -1, dims=1).clamp(max=20)
    targets[:, -1] = 7
    targets[ids == 0] = 0
    results = []
    for buckets in (1, 8):
        model = _built(preset, overrides, buckets)
        torch.manual_seed(1)
        member = next(iter(getattr(model, "members", [model])))
        if preset.startswith("release"):
            # The release's noise is drawn group by group, so the random stream moves on
            # differently: the same noise at every element makes the draws not matter.
            monkeypatch.setattr(type(member), "noise", staticmethod(
                lambda shape, like: torch.full(shape, 0.5, dtype=like.dtype)))
        member.before_training(ids, 1)
        torch.manual_seed(2)
        results.append((model.score(ids), member.loss(Batch(ids, targets)).total))
    torch.testing.assert_close(results[1][0], results[0][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(results[1][1], results[0][1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_cpu_dropout_keeps_1_minus_p_and_rescales(p: float) -> None:
    from adarec.model.encoder import Dropout

    torch.manual_seed(0)
    drop = Dropout(p).train()
    x = torch.ones(400, 500)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.005  # 200,000 draws: sd ~0.001
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
    assert abs(y.mean().item() - 1.0) < 0.01
    assert torch.equal(drop.eval()(x), x)


def _brute_force_cost(widths: list[int], max_groups: int, group_cost: int) -> int:
    """The cheapest split of sorted widths into at most max_groups consecutive runs."""
    import itertools

    w = sorted(widths)
    best = None
    for g in range(1, max_groups + 1):
        for cuts in itertools.combinations(range(1, len(w)), g - 1):
            bounds = [0, *cuts, len(w)]
            cost = sum((b - a) * w[b - 1] + group_cost for a, b in itertools.pairwise(bounds))
            best = cost if best is None else min(best, cost)
    return best


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("max_groups", "group_cost"), [(1, 0), (3, 0), (4, 2), (8, 5)])
def test_length_groups_are_the_cheapest_split(seed: int, max_groups: int, group_cost: int):
    from adarec.model.grouping import length_groups

    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, 9, (9,), generator=gen)
    visible = torch.arange(8)[None, :] >= 8 - lengths[:, None]  # right-aligned rows
    groups, inverse = length_groups(visible, max_groups, group_cost)
    widths = lengths.clamp(min=1)
    assert len(groups) <= max_groups
    rows = torch.cat([r for r, _ in groups])
    assert sorted(rows.tolist()) == list(range(9))  # every row exactly once
    assert torch.equal(rows[inverse], torch.arange(9))  # inverse restores the order
    for r, w in groups:
        assert int(widths[r].max()) == w  # a group is cut to its widest row
    cost = sum(len(r) * w + group_cost for r, w in groups)
    assert cost == _brute_force_cost(widths.tolist(), max_groups, group_cost)


def test_in_length_groups_widens_positional_outputs_and_keeps_row_order():
    from adarec.model.grouping import in_length_groups

    ids = _rows_with_holes()[:, :]  # 12 rows, lengths 1..12

    def fn(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        per_position = x.float().unsqueeze(-1) * 2  # (b, w, 1)
        per_row = torch.stack([x.shape[1] * torch.ones(len(x)), (x > 0).sum(1)], -1)
        return per_position, per_row

    positions, per_row = in_length_groups(fn, ids, 4, (True, False), group_cost=0)
    assert positions.shape == (12, 12, 1)
    torch.testing.assert_close(positions[..., 0], ids.float() * 2)  # left padding is zero
    torch.testing.assert_close(per_row[:, 1], (ids > 0).sum(1).float())
    assert len(set(per_row[:, 0].tolist())) == 4  # four widths: four groups ran
    assert (per_row[:, 0] >= torch.arange(1, 13)).all()  # each row saw all its items


@pytest.mark.parametrize("buckets", [1, 4])
def test_last_only_is_the_last_position_of_the_whole_output(buckets: int) -> None:
    torch.manual_seed(0)
    enc = Transformer(dim=16, n_layers=2, n_heads=2, attn_dropout=0.0, hidden_dropout=0.0).eval()
    enc.grouping = LengthGrouping(buckets, 0)
    ids = _rows_with_holes()
    x = torch.randn(12, 12, 16)
    mask = attention_mask(ids)
    last = enc(x, mask, last_only=True)
    assert last.shape == (12, 1, 16)
    torch.testing.assert_close(last, enc(x, mask)[:, -1:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("preset", ["default", "elcrec-beauty", "adarec-beauty", "release-beauty",
                                    "without-router"])
def test_scores_read_the_last_position_of_the_full_forward(preset: str) -> None:
    """``score`` takes the cheaper last-position-only path: it must equal the full one."""
    overrides = ["model.hidden_size=16", "intents.n_intents=4", "adarec.max_depth=3"]
    if preset == "without-router":
        preset, overrides = "adarec-beauty", [*overrides, "adarec.router=constant"]
    ids = _rows_with_holes()
    ids[11, 3] = 5
    for buckets in (1, 8):
        model = _built(preset, overrides, buckets)
        for member in getattr(model, "members", [model]):
            full = member(ids)[:, -1] @ member.item_table.T
            torch.testing.assert_close(member.score(ids), full, atol=1e-5, rtol=1e-5)


def test_group_cost_falls_with_width_and_groups_collapse_when_they_do_not_pay():
    from adarec.model.grouping import group_cost, length_groups

    assert group_cost(256) == 32 and group_cost(64) == 512 and group_cost(1024) == 2
    visible = torch.arange(50)[None, :] >= 50 - torch.tensor([3, 4, 48, 50])[:, None]
    assert len(length_groups(visible, 8, 0)[0]) == 4
    assert [w for _, w in length_groups(visible, 8, 40)[0]] == [4, 50]  # saves 92 > 40
    assert [w for _, w in length_groups(visible, 8, 100)[0]] == [50]  # 92 < 100: one group
