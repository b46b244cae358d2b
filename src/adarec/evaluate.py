"""Full-ranking evaluation on the scores' device (docs/protocol.md#ranking-and-metrics).

Every item is ranked for every user; the items of the user's whole history before the answer
are excluded. ``history_mask="inf"`` (default, the clean protocol) sets the history, the
padding column 0 and any spare columns after ``n_items`` to -inf, so only real items rank.
``history_mask="zero"`` reproduces the original release: history scores are set to 0 and
nothing else is masked, so padding/spare columns rank too and, when scores are negative, a
history item can still outrank the answer. Report both when comparing with the paper.

Ties (docs/protocol.md#ties): ``ties="conservative"`` (default) ranks the answer after every
item with an equal score; ``ties="by_id"`` (adarec's behaviour before) ranks it after the
equal items with a smaller id only, which favours items numbered early.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from adarec import distributed
from adarec.data.splits import EvalSplit, trim_left
from adarec.metrics import summarize

ScoreFn = Callable[[torch.Tensor], torch.Tensor]
"""(B, L) int64 inputs -> (B, C) scores, C >= n_items + 1; column j = item j, 0 = padding."""

HISTORY_MASKS = ("inf", "zero")
TIES = ("conservative", "by_id")


def _check_mask(history_mask: str) -> None:
    if history_mask not in HISTORY_MASKS:
        raise ValueError(f"history_mask must be one of {HISTORY_MASKS}, got {history_mask!r}")


def _check_ties(ties: str) -> None:
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")


def _fresh_float(scores: torch.Tensor) -> torch.Tensor:
    # A float copy we may write in place without touching the caller's tensor.
    return scores.clone() if scores.is_floating_point() else scores.float()


def rank_answers(
    scores: torch.Tensor,
    answers: torch.Tensor,
    hist_rows: torch.Tensor,
    hist_items: torch.Tensor,
    n_items: int,
    history_mask: str = "inf",
    ties: str = "conservative",
) -> torch.Tensor:
    """1-based rank of each row's answer among the columns of ``scores``.

    ``scores`` (B, C >= n_items + 1) is not modified; ``answers`` is (B,); ``hist_rows`` /
    ``hist_items`` (H,) are the (row in 0..B-1, item) history entries to exclude;
    ``history_mask`` is "inf" (clean) or "zero" (original release), see the module docstring.

    Returns (B,) int64 ranks: 1 + #columns with a strictly higher score + #other columns
    with an equal score (``ties="conservative"``), or + #columns with an equal score and a
    smaller index (``ties="by_id"``, the earlier behaviour). NaN scores count as -inf.
    An answer that is itself in the history (a repeat) is masked like any history item: in
    "inf" mode it sits at -inf behind every real item (never a hit), in "zero" mode its
    score is 0. This is the standard protocol and is kept on purpose.
    """
    _check_mask(history_mask)
    _check_ties(ties)
    if scores.dim() != 2 or scores.shape[1] < n_items + 1:
        raise ValueError(f"scores must be (B, C>={n_items + 1}), got {tuple(scores.shape)}")
    dev = scores.device
    s = _fresh_float(scores)
    torch.nan_to_num_(s, nan=float("-inf"), posinf=float("inf"), neginf=float("-inf"))
    rows, items = hist_rows.to(dev), hist_items.to(dev)
    if history_mask == "inf":
        s[:, 0] = float("-inf")
        s[:, n_items + 1 :] = float("-inf")
        s[rows, items] = float("-inf")
    else:
        s[rows, items] = 0.0
    answers = answers.to(dev)
    a = s.gather(1, answers[:, None])  # (B, 1)
    if ties == "conservative":
        # One pass: the answer's own column is the one equal score not ahead of it. An
        # answer at -inf (a repeat under "inf") ranks after every column: never a hit.
        return (s >= a).sum(dim=1)
    col = torch.arange(s.shape[1], device=dev)  # (C,)
    ahead = (s > a) | ((s == a) & (col[None, :] < answers[:, None]))  # (B, C)
    return ahead.sum(dim=1) + 1


def evaluate(
    score_fn: ScoreFn,
    split: EvalSplit,
    n_items: int,
    *,
    history_mask: str = "inf",
    ties: str = "conservative",
    batch_size: int = 2048,
    ks: Sequence[int] = (5, 10, 20),
    buckets: Sequence[int] = (3, 5, 10),
    device: torch.device | str | None = None,
    trim: bool = True,
) -> dict[str, dict[str, float]]:
    """Rank every answer of ``split`` over all items, under ``torch.inference_mode``.

    With ``trim`` (default) each batch loses the columns that are padding in all its rows
    before ``score_fn`` sees it; the models here count positions from the right, so this
    changes no score and saves most of the work (eval rows are sorted by length).

    ``score_fn`` gets contiguous row batches of ``split.inputs``, moved to ``device`` if given
    (else left where the split is; ``split.to(device)`` up front saves per-batch copies).
    Answers and history entries follow the scores' device; ranks stay there until the end.
    Returns ``{"all": ..., "len<=b": ... for b in buckets}``, each ``summarize(ranks, ks)``
    plus ``"users"`` (group size); buckets use ``split.history_lengths`` (whole history).
    An empty group has 0.0 metrics and ``users == 0``.
    """
    return evaluate_masks(score_fn, split, n_items, history_masks=(history_mask,),
                          ties=ties, batch_size=batch_size, ks=ks, buckets=buckets, device=device,
                          trim=trim)[history_mask]


def evaluate_masks(
    score_fn: ScoreFn,
    split: EvalSplit,
    n_items: int,
    *,
    history_masks: Sequence[str] = HISTORY_MASKS,
    ties: str = "conservative",
    batch_size: int = 2048,
    ks: Sequence[int] = (5, 10, 20),
    buckets: Sequence[int] = (3, 5, 10),
    device: torch.device | str | None = None,
    trim: bool = True,
) -> dict[str, dict[str, dict[str, float]]]:
    """`evaluate` under each of ``history_masks`` from one pass of ``score_fn``:
    ``{mask: evaluate(..., history_mask=mask)}``."""
    ranks = rank_masks(score_fn, split, n_items, history_masks=history_masks, ties=ties,
                       batch_size=batch_size, device=device, trim=trim)
    return {mask: summaries(r, split, ks, buckets) for mask, r in ranks.items()}


def rank_masks(
    score_fn: ScoreFn,
    split: EvalSplit,
    n_items: int,
    *,
    history_masks: Sequence[str] = HISTORY_MASKS,
    ties: str = "conservative",
    batch_size: int = 2048,
    device: torch.device | str | None = None,
    trim: bool = True,
) -> dict[str, torch.Tensor]:
    """Every row's 1-based answer rank (U,) under each of ``history_masks``, from one pass of
    ``score_fn`` (see `evaluate`); the per-user outcome that `summaries` averages."""
    for mask in history_masks:
        _check_mask(mask)
    _check_ties(ties)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    parts: dict[str, list[torch.Tensor]] = {mask: [] for mask in history_masks}
    with torch.inference_mode():
        for start in range(0, len(split), batch_size):
            stop = min(start + batch_size, len(split))
            inputs = split.inputs[start:stop]
            if trim:
                (inputs,) = trim_left(inputs)
            scores = score_fn(inputs if device is None else inputs.to(device))  # (B, C)
            rows, items = split.history_coo(start, stop)
            answers = split.answers[start:stop]
            for mask in history_masks:
                parts[mask].append(rank_answers(scores, answers, rows, items, n_items, mask,
                                                ties))
    # An empty split (a process's share of fewer rows than processes) gives empty ranks on
    # the scores' device, where a gather (NCCL: CUDA only) expects them.
    where = split.inputs.device if device is None else device
    return {mask: torch.cat(p) if p else torch.zeros(0, dtype=torch.int64, device=where)
            for mask, p in parts.items()}


def sharded_rank_masks(
    score_fn: ScoreFn, split: EvalSplit, n_items: int, **options: object,
) -> dict[str, torch.Tensor]:
    """`rank_masks` of all of ``split``; under torchrun each process ranks its contiguous
    share of the rows (in batches of ``batch_size``) and the ranks are gathered, in the
    split's order, on every process, so all compute the same metrics. Alone: `rank_masks`."""
    if not distributed.active():
        return rank_masks(score_fn, split, n_items, **options)
    lo, hi = distributed.shard_bounds(len(split))
    rows = torch.arange(lo, hi, device=split.inputs.device)
    ranks = rank_masks(score_fn, split.take(rows), n_items, **options)
    return {mask: distributed.gather_rows(r) for mask, r in ranks.items()}


def summaries(
    ranks: torch.Tensor, split: EvalSplit, ks: Sequence[int] = (5, 10, 20),
    buckets: Sequence[int] = (3, 5, 10),
) -> dict[str, dict[str, float]]:
    """``{"all": ..., "len<=b": ...}`` metrics of ``ranks`` (U,), one per row of ``split``."""
    lengths = split.history_lengths.to(ranks.device)
    out = {"all": {**summarize(ranks, ks), "users": len(ranks)}}
    for b in buckets:
        sel = ranks[lengths <= b]
        out[f"len<={b}"] = {**summarize(sel, ks), "users": sel.numel()}
    return out


def topk_items(
    scores: torch.Tensor,
    k: int,
    *,
    n_items: int,
    exclude_rows: torch.Tensor | None = None,
    exclude_items: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` real items per row: (values, indices), each (B, k), indices = item ids.

    Column 0, columns after ``n_items`` and the (row, item) pairs given by ``exclude_rows`` /
    ``exclude_items`` (e.g. from ``EvalSplit.history_coo``) are set to -inf first. A value of
    -inf in the result means fewer than ``k`` items were left to recommend for that row.
    """
    if not 1 <= k <= n_items:
        raise ValueError(f"k must be in 1..n_items={n_items}, got {k}")
    if (exclude_rows is None) != (exclude_items is None):
        raise ValueError("exclude_rows and exclude_items must be given together")
    s = _fresh_float(scores)
    s[:, 0] = float("-inf")
    s[:, n_items + 1 :] = float("-inf")
    if exclude_rows is not None and exclude_items is not None:
        s[exclude_rows.to(s.device), exclude_items.to(s.device)] = float("-inf")
    return torch.topk(s, k, dim=1)


def popularity_score_fn(counts: torch.Tensor) -> ScoreFn:
    """Baseline scoring every user alike by ``counts`` ((n_items + 1,), see `item_counts`)."""
    table = counts.to(torch.float32)

    def score(inputs: torch.Tensor) -> torch.Tensor:
        t = table.to(inputs.device)
        return t.expand(inputs.shape[0], t.shape[0])  # (B, n_items + 1), a view

    return score


def item_counts(split: EvalSplit, n_items: int) -> torch.Tensor:
    """(n_items + 1,) int64 interaction counts over ``split.history_items`` (index 0 unused).

    Pass the VALID split: its histories are exactly the training part ``s[:-2]`` of every
    sequence, so the counts leak neither the validation nor the test answers. (The test
    split's histories contain the validation answers.)
    """
    return torch.bincount(split.history_items, minlength=n_items + 1)
