"""Full-ranking evaluation on hand-made score matrices and a hand-built EvalSplit."""

import math

import pytest
import torch

from adarec.data.sequences import Sequences
from adarec.data.splits import EvalSplit, build_splits
from adarec.evaluate import (
    evaluate,
    evaluate_masks,
    item_counts,
    popularity_score_fn,
    rank_answers,
    topk_items,
)

NEG = float("-inf")


def _ranks(scores, answers, hist, n_items, mode, ties="conservative"):
    rows = torch.tensor([r for r, _ in hist], dtype=torch.int64)
    items = torch.tensor([i for _, i in hist], dtype=torch.int64)
    return rank_answers(
        torch.tensor(scores), torch.tensor(answers), rows, items, n_items, history_mask=mode,
        ties=ties,
    ).tolist()


# n_items = 4, columns: [pad, 1, 2, 3, 4, spare]
SCORES = [
    [-5.0, -1.0, -2.0, -3.0, -4.0, -6.0],  # answer 2; history item 3 (-3 -> 0 in zero mode)
    [5.0, 1.0, 2.0, 3.0, 0.5, 4.0],  # answer 3; padding and spare beat it in zero mode only
    [0.0, 1.0, 1.0, 1.0, 1.0, 0.0],  # answer 3; ties with items 1, 2 (smaller id) and 4
    [1.0, 1.0, 0.5, 0.2, 0.1, 0.0],  # answer 1; ties with the padding column (zero mode)
    [0.0, 1.0, 2.0, 3.0, 4.0, 0.0],  # answer 2 is itself in the history
]
ANSWERS = [2, 3, 3, 1, 2]
HIST = [(0, 3), (1, 1), (4, 2), (4, 2)]  # (row, item); duplicates are allowed


def test_rank_answers_inf_mode():
    # Conservative: row 2 ranks after all three equal items; row 4's answer is at -inf
    # (history), behind all 6 columns (padding and spare are at -inf too).
    assert _ranks(SCORES, ANSWERS, HIST, 4, "inf") == [2, 1, 4, 1, 6]
    # by_id: row 2 only after items 1 and 2; row 4: ahead are items 1, 3, 4 (finite) and
    # column 0 (-inf, smaller index).
    assert _ranks(SCORES, ANSWERS, HIST, 4, "inf", "by_id") == [2, 1, 3, 1, 5]


def test_rank_answers_zero_mode():
    # Row 0: history item 3 gets 0 > -2. Row 1: pad 5 and spare 4 beat 3; item 1 -> 0.
    # Row 3: ties with padding column 0. Row 4: answer -> 0, below 1, 3, 4; col 0 ties first,
    # the spare column (0) ties too (after it under by_id, ahead of it when conservative).
    assert _ranks(SCORES, ANSWERS, HIST, 4, "zero") == [3, 3, 4, 2, 6]
    assert _ranks(SCORES, ANSWERS, HIST, 4, "zero", "by_id") == [3, 3, 3, 2, 5]


def test_ties_hand_case():
    # Five items, every one scored 1.0: a constant model. The answer is item 2.
    flat = [[0.0, 1.0, 1.0, 1.0, 1.0, 1.0]]
    assert _ranks(flat, [2], [], 5, "inf") == [5]  # after every equal item
    assert _ranks(flat, [2], [], 5, "inf", "by_id") == [2]  # only item 1 is ahead
    # Item 4 (history) is masked and no longer ties; item 5 scores higher; items 1 and 3
    # tie (both ahead when conservative, only item 1 by id).
    mixed = [[0.0, 1.0, 1.0, 1.0, 1.0, 2.0]]
    assert _ranks(mixed, [2], [(0, 4)], 5, "inf") == [4]
    assert _ranks(mixed, [2], [(0, 4)], 5, "inf", "by_id") == [3]
    with pytest.raises(ValueError, match="ties"):
        _ranks(flat, [2], [], 5, "inf", "random")


def test_rank_answers_leaves_input_alone_and_handles_int_nan():
    scores = torch.tensor(SCORES)
    before = scores.clone()
    rank_answers(scores, torch.tensor(ANSWERS), torch.tensor([0]), torch.tensor([1]), 4)
    assert torch.equal(scores, before)
    one, none = torch.tensor([1]), torch.zeros(0, dtype=torch.int64)
    ints = torch.tensor([[0, 3, 2, 1]])  # integer scores; item 1 (3) is history
    assert rank_answers(ints, torch.tensor([2]), torch.tensor([0]), one, 3).item() == 1
    # A NaN answer counts as -inf, so it must not rank first: items 1, 3 and column 0 lead.
    nan = torch.tensor([[0.0, 1.0, float("nan"), 0.5]])
    assert rank_answers(nan, torch.tensor([2]), none, none, 3).item() == 4


def test_rank_answers_validates():
    empty = torch.zeros(0, dtype=torch.int64)
    with pytest.raises(ValueError, match="history_mask"):
        rank_answers(torch.zeros(1, 5), torch.tensor([1]), empty, empty, 4, history_mask="nan")
    with pytest.raises(ValueError, match="scores must be"):
        rank_answers(torch.zeros(1, 4), torch.tensor([1]), empty, empty, 4)


# Hand-built split, n_items = 5, scores [pad 9, items 5 4 3 2 1, spare 8] for every user:
# inf rank = 1 + #non-history items with a smaller id; zero rank adds pad and spare (+2).
HISTORIES = [[1, 2], [5, 4, 3], [2, 2, 5, 2, 5], [3] * 8, [5] * 12]
ANS = [3, 2, 4, 5, 5]
INF_RANKS = [1, 2, 3, 4, 7]  # user 4's answer is in its history: after all 7 columns
ZERO_RANKS = [3, 4, 5, 6, 7]
FIXED = torch.tensor([9.0, 5.0, 4.0, 3.0, 2.0, 1.0, 8.0])


def _split() -> EvalSplit:
    lengths = torch.tensor([len(h) for h in HISTORIES])
    inputs = torch.tensor([([0] * 4 + h)[-4:] for h in HISTORIES])
    return EvalSplit(
        inputs=inputs,
        answers=torch.tensor(ANS),
        history_lengths=lengths,
        history_items=torch.tensor([i for h in HISTORIES for i in h]),
        history_offsets=torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)]),
        users=torch.arange(len(HISTORIES)),
    )


def _fixed(inputs: torch.Tensor) -> torch.Tensor:
    return FIXED.expand(inputs.shape[0], -1)


def test_evaluate_hand_computed_inf():
    out = evaluate(_fixed, _split(), 5, batch_size=2)
    assert set(out) == {"all", "len<=3", "len<=5", "len<=10"}
    a = out["all"]
    assert a["users"] == 5
    assert a["HR@5"] == pytest.approx(0.8) and a["HR@10"] == pytest.approx(1.0)
    ndcg5 = (1 + 1 / math.log2(3) + 0.5 + 1 / math.log2(5)) / 5
    assert a["NDCG@5"] == pytest.approx(ndcg5)
    assert a["MRR"] == pytest.approx(sum(1 / r for r in INF_RANKS) / 5)
    assert out["len<=3"]["users"] == 2 and out["len<=3"]["HR@5"] == 1.0
    assert out["len<=3"]["NDCG@5"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert out["len<=5"]["users"] == 3
    assert out["len<=5"]["MRR"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    assert out["len<=10"]["users"] == 4


def test_evaluate_hand_computed_zero():
    out = evaluate(_fixed, _split(), 5, history_mask="zero", buckets=(3,))
    assert set(out) == {"all", "len<=3"}
    assert out["all"]["HR@5"] == pytest.approx(0.6)
    assert out["all"]["MRR"] == pytest.approx(sum(1 / r for r in ZERO_RANKS) / 5)
    assert out["len<=3"]["MRR"] == pytest.approx((1 / 3 + 1 / 4) / 2)


def test_evaluate_batch_size_invariant_and_input_aligned():
    torch.manual_seed(0)
    table = torch.randn(6, 7)  # scores depend on each row's last input item

    def fn(inputs: torch.Tensor) -> torch.Tensor:
        return table[inputs[:, -1]]

    split = _split()
    results = [evaluate(fn, split, 5, batch_size=b, device="cpu") for b in (1, 2, 1000)]
    assert results[0] == results[1] == results[2]
    rows, items = split.history_coo(0, len(split))
    ranks = rank_answers(fn(split.inputs), split.answers, rows, items, 5)
    assert results[0]["all"]["MRR"] == pytest.approx((1 / ranks.double()).mean().item())


def test_evaluate_empty_and_bad_mode():
    empty = EvalSplit(
        *(torch.zeros(0, 4, dtype=torch.int64),)
        + tuple(torch.zeros(n, dtype=torch.int64) for n in (0, 0, 0, 1, 0))
    )
    out = evaluate(_fixed, empty, 5)
    assert out["all"]["users"] == 0 and out["all"]["HR@5"] == 0.0
    with pytest.raises(ValueError, match="history_mask must be one of"):
        evaluate(_fixed, _split(), 5, history_mask="Inf")


def test_popularity_on_valid_split():
    splits = build_splits(Sequences.from_lists([[1, 2, 2, 3, 4], [2, 3, 4, 1]]))
    counts = item_counts(splits.valid, splits.n_items)  # histories [1, 2, 2] and [2, 3]
    assert counts.tolist() == [0, 1, 3, 1, 0]
    fn = popularity_score_fn(counts)
    scores = fn(splits.valid.inputs)
    assert scores.shape == (2, 5) and scores.dtype == torch.float32
    # Answers 3 and 4: user 0 -> item 3 (1) beats item 4 (0): rank 1; user 1 -> item 1 (1)
    # beats answer 4 (0): rank 2.
    out = evaluate(fn, splits.valid, splits.n_items)
    assert out["all"]["MRR"] == pytest.approx(0.75)
    assert out["all"]["HR@5"] == 1.0


def test_topk_items_excludes_history_padding_and_spare():
    scores = torch.tensor([[9.0, 1.0, 5.0, 3.0, 4.0, 8.0], [9.0, 4.0, 3.0, 2.0, 1.0, 8.0]])
    before = scores.clone()
    vals, idx = topk_items(
        scores, 2, n_items=4, exclude_rows=torch.tensor([0, 1]), exclude_items=torch.tensor([2, 1])
    )
    assert idx.tolist() == [[4, 3], [2, 3]]
    assert vals.tolist() == [[4.0, 3.0], [3.0, 2.0]]
    assert torch.equal(scores, before)
    vals, idx = topk_items(
        scores, 4, n_items=4, exclude_rows=torch.tensor([0]), exclude_items=torch.tensor([2])
    )
    assert idx[0, :3].tolist() == [4, 3, 1] and vals[0, 3].item() == NEG
    with pytest.raises(ValueError, match="k must be"):
        topk_items(scores, 5, n_items=4)
    with pytest.raises(ValueError, match="together"):
        topk_items(scores, 1, n_items=4, exclude_rows=torch.tensor([0]))


def test_evaluate_masks_scores_once_and_matches_evaluate_per_mask():
    calls = []

    def counting(inputs: torch.Tensor) -> torch.Tensor:
        calls.append(len(inputs))
        return _fixed(inputs)

    both = evaluate_masks(counting, _split(), 5, batch_size=2)
    assert sum(calls) == len(HISTORIES)  # every user scored once, not once per mask
    for mask in ("inf", "zero"):
        assert both[mask] == evaluate(_fixed, _split(), 5, history_mask=mask, batch_size=2)
