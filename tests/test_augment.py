"""Semantics of the vectorised CL4SRec augmentations (crop, mask, reorder, random)."""

from __future__ import annotations

import pytest
import torch

from adarec.model.augment import crop, mask, random_augment, reorder

L = 20
LENGTHS = [0, 1, 2, 4, 5, 9, 10, 12, 20]


def _batch() -> torch.Tensor:
    """Left-padded rows of the lengths above, items distinct within a row (100 + 10 * row + i)."""
    rows = []
    for r, n in enumerate(LENGTHS):
        real = [100 + 10 * r + i for i in range(n)]
        rows.append([0] * (L - n) + real)
    return torch.tensor(rows, dtype=torch.int64)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _real(row: torch.Tensor) -> list[int]:
    return [int(v) for v in row if v != 0]


@pytest.mark.parametrize("seed", range(10))
def test_crop_keeps_a_contiguous_run_of_int_ratio_n_items(seed: int) -> None:
    seqs = _batch()
    out = crop(seqs, 0.2, _gen(seed))
    assert out.shape == seqs.shape and out.dtype == torch.int64
    for r, n in enumerate(LENGTHS):
        k = max(1, int(0.2 * n)) if n else 0  # 0,1,1,1,1,1,2,2,4
        assert torch.all(out[r, : L - k] == 0)  # left-padded
        kept = out[r, L - k :].tolist()
        assert all(v != 0 for v in kept)
        original = _real(seqs[r])
        assert any(original[s : s + k] == kept for s in range(n - k + 1))


def test_crop_start_covers_every_window_including_the_last() -> None:
    # n = 10, k = 2: 9 windows; ICLRec's randint(0, n - k - 1) would never reach the last one.
    seqs = torch.tensor([[0] * 10 + list(range(1, 11))])
    starts = {int(crop(seqs, 0.2, _gen(s))[0, -2]) - 1 for s in range(300)}
    assert starts == set(range(9))


def test_crop_ratio_one_keeps_everything() -> None:
    seqs = _batch()
    assert torch.equal(crop(seqs, 1.0, _gen(0)), seqs)


@pytest.mark.parametrize("seed", range(10))
def test_mask_replaces_exactly_int_ratio_n_real_positions(seed: int) -> None:
    seqs = _batch()
    out = mask(seqs, 0.7, _gen(seed), mask_id=999)
    for r, n in enumerate(LENGTHS):
        m = int(0.7 * n)  # 0, 0, 1, 2, 3, 6, 7, 8, 14
        assert torch.all(out[r, : L - n] == 0)  # padding untouched
        hit = out[r, L - n :] == 999
        assert int(hit.sum()) == m
        assert torch.equal(out[r, L - n :][~hit], seqs[r, L - n :][~hit])  # others unchanged


def test_mask_default_id_is_padding_and_keeps_shape() -> None:
    seqs = _batch()
    out = mask(seqs, 0.7, _gen(3))
    for r, n in enumerate(LENGTHS):
        assert int((out[r, L - n :] == 0).sum()) == int(0.7 * n)


def test_mask_chooses_different_positions_per_row_and_seed() -> None:
    seqs = torch.arange(1, 11).repeat(8, 1)  # 8 identical rows, n = 10
    out = mask(seqs, 0.5, _gen(0), mask_id=-1)
    assert len({tuple(row.tolist()) for row in out}) > 1


@pytest.mark.parametrize("seed", range(10))
def test_reorder_permutes_only_a_window_of_int_ratio_n(seed: int) -> None:
    seqs = _batch()
    out = reorder(seqs, 0.2, _gen(seed))
    for r, n in enumerate(LENGTHS):
        w = int(0.2 * n)  # 0,0,0,0,1,1,2,2,4
        assert torch.all(out[r, : L - n] == 0)
        assert sorted(_real(out[r])) == sorted(_real(seqs[r]))  # multiset preserved
        diff = (out[r] != seqs[r]).nonzero().flatten().tolist()
        if w <= 1:
            assert diff == []
        elif diff:
            assert min(diff) >= L - n and max(diff) - min(diff) < w


def test_reorder_actually_shuffles_and_reaches_the_last_window() -> None:
    seqs = torch.tensor([list(range(1, 21))])  # n = 20, w = 4
    changed_last = False
    for s in range(100):
        out = reorder(seqs, 0.2, _gen(s))
        diff = (out[0] != seqs[0]).nonzero().flatten()
        changed_last |= bool(diff.numel()) and int(diff.max()) == 19
    assert changed_last


def test_reorder_window_is_a_uniform_permutation() -> None:
    seqs = torch.tensor([[1, 2]])  # ratio 1: the whole sequence is the window
    outs = {tuple(reorder(seqs, 1.0, _gen(s))[0].tolist()) for s in range(50)}
    assert outs == {(1, 2), (2, 1)}


def test_all_padding_and_length_one_rows() -> None:
    seqs = torch.tensor([[0, 0, 0], [0, 0, 7]])
    g = _gen(0)
    for out in (crop(seqs, 0.2, g), mask(seqs, 0.7, g, mask_id=9), reorder(seqs, 0.2, g)):
        assert torch.equal(out, seqs)
    assert torch.equal(random_augment(seqs, g), seqs)


def test_input_untouched_and_seeded_runs_repeat() -> None:
    seqs = _batch()
    before = seqs.clone()
    a = random_augment(seqs, _gen(5))
    b = random_augment(seqs, _gen(5))
    assert torch.equal(seqs, before) and torch.equal(a, b)
    assert random_augment(seqs).shape == seqs.shape  # global RNG


def test_random_augment_rows_come_from_the_three_operators() -> None:
    seqs = _batch().repeat(6, 1)
    out = random_augment(seqs, _gen(11), mask_id=999)
    # Same draws in the documented order: crop, mask, reorder, then the choice.
    g = _gen(11)
    ops = torch.stack([crop(seqs, 0.2, g), mask(seqs, 0.7, g, mask_id=999), reorder(seqs, 0.2, g)])
    choice = torch.randint(0, 3, (seqs.shape[0],), generator=g)
    assert set(choice.tolist()) == {0, 1, 2}
    assert torch.equal(out, ops[choice, torch.arange(seqs.shape[0])])


def test_ratio_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="ratio"):
        crop(_batch(), 1.5)
