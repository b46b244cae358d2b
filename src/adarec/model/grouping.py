"""Length grouping on the CPU: rows of similar length run together, each group cut to its
own width, for the same outputs at real positions and a fraction of the work on data whose
sequences are mostly padding (Beauty: median 3 items of 50).

This is a speed-up, not part of the method: `adarec.model.build` gives each model (and each
`Transformer`) a `LengthGrouping`, or None to run batches whole; the model files call it
around the maths. On a GPU grouping would wait for the device, so batches run whole there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from adarec.model.intents import self_dot


@dataclass(frozen=True)
class LengthGrouping:
    """At most ``max_groups`` length groups per batch, each costing ``cost`` padded positions
    (see `length_groups`)."""

    max_groups: int
    cost: int

    def groups(self, visible: Tensor) -> tuple[list[tuple[Tensor, int]], Tensor]:
        """`length_groups` of the rows whose real positions ``visible`` (B, L) marks."""
        return length_groups(visible, self.max_groups, self.cost)

    def map(
        self, fn: Callable[..., Sequence[Tensor]], input_ids: Tensor,
        positional: Sequence[bool], with_rows: bool = False,
    ) -> list[Tensor]:
        """`in_length_groups` with this grouping."""
        return in_length_groups(fn, input_ids, self.max_groups, positional, self.cost,
                                with_rows=with_rows)

    def gram(self, z: Tensor) -> Tensor:
        """`flat_gram` with this grouping."""
        return flat_gram(z, self.max_groups, self.cost)


def grouped(grouping: LengthGrouping | None, x: Tensor) -> LengthGrouping | None:
    """``grouping`` if the batch ``x`` (rows first) runs in length groups, else None (no
    grouping, a GPU tensor, or fewer than 2 rows)."""
    if grouping is None or runs_whole(x, grouping.max_groups):
        return None
    return grouping


def group_cost(dim: int) -> int:
    """The price of one more length group, in padded positions, for work of width ``dim``.

    A group costs its own kernel calls, about the time of 32 positions of a width-256 encoder
    on 2 CPU cores (measured on Beauty); a position's work grows with ``dim**2``, so narrower
    models split off fewer groups (width 64: 512 positions; measured 10-20 % faster for
    ELCRec than 32).
    """
    return max(1, round(32 * (256 / dim) ** 2))


def runs_whole(x: Tensor, buckets: int) -> bool:
    """Whether a batch ``x`` (rows first) runs whole rather than in length groups: on a GPU
    (grouping would wait for the device), with ``buckets <= 1`` (off) or fewer than 2 rows."""
    return buckets <= 1 or x.device.type != "cpu" or x.shape[0] < 2


def length_groups(
    visible: Tensor, max_groups: int, group_cost: int
) -> tuple[list[tuple[Tensor, int]], Tensor]:
    """Rows cut into at most ``max_groups`` groups of similar width, for running them group by
    group, each group cut to its widest row.

    ``visible`` (B, L) bool marks real positions of right-aligned rows; a row's width is the
    distance from its first real position to the end (at least 1, so an all-padding row is
    one column wide). The groups are those that minimise the positions computed, ``sum over
    groups of rows x width``, plus ``group_cost`` per group (an exact dynamic programme over
    the distinct widths): on Beauty's random batches of 256 rows, 8 groups compute 1.11x the
    real positions where one whole batch computes 8.3x. Returns ``[(rows, width)]`` per group,
    narrowest first, each group's rows in the input's order (so rows that lead the input lead
    their group), and the permutation that puts the groups' concatenated rows back in the
    input's order.
    """
    length = visible.shape[1]
    visible = visible.clone()
    visible[:, -1] = True
    widths = length - visible.to(torch.int8).argmax(-1)
    order = torch.argsort(widths, stable=True)
    values, counts = torch.unique(widths, return_counts=True)
    ends = _cheapest_cuts(values.tolist(), counts.tolist(), max_groups, group_cost)
    first = 0
    groups = []
    for end, width in ends:
        groups.append((order[first:end].sort().values, width))
        first = end
    return groups, torch.argsort(torch.cat([rows for rows, _ in groups]))


def _cheapest_cuts(
    values: list[int], counts: list[int], max_groups: int, group_cost: int
) -> list[tuple[int, int]]:
    """Split sorted distinct ``values`` (with ``counts`` rows each) into at most ``max_groups``
    consecutive runs minimising ``sum(rows x largest value) + group_cost x runs``; returns
    each run's (end row, exclusive, in sorted order; its width)."""
    m = len(values)
    rows = np.concatenate([[0], np.cumsum(counts)])  # rows[j]: rows with the j smallest values
    width = np.array([0, *values], dtype=np.float64)
    start, stop = np.arange(m + 1)[:, None], np.arange(m + 1)[None, :]
    # cost[i, j]: one group holding the values i..j-1, at width values[j - 1].
    cost = np.where(start < stop, (rows[None, :] - rows[:, None]) * width[None, :] + group_cost,
                    np.inf)
    best = cost[0]  # best[j]: values 0..j-1 in g + 1 groups
    totals, back = [best[m]], [np.zeros(m + 1, dtype=np.int64)]
    for _ in range(1, min(max_groups, m)):
        candidates = best[:, None] + cost
        back.append(candidates.argmin(0))
        best = candidates.min(0)
        totals.append(best[m])
    ends, j = [], m
    for g in range(int(np.argmin(totals)), -1, -1):
        ends.append((int(rows[j]), values[j - 1]))
        j = int(back[g][j])
    return ends[::-1]


def in_length_groups(
    fn: Callable[..., Sequence[Tensor]], input_ids: Tensor,
    n_groups: int, positional: Sequence[bool], group_cost: int, with_rows: bool = False,
) -> list[Tensor]:
    """``fn(input_ids)``, computed group by group over rows of similar length (`length_groups`),
    each group cut to its own width, then put back together.

    ``fn`` maps right-aligned ids (b, w) to tensors with rows first; ``positional[i]`` says
    that output i is (b, w, ...), which comes back widened to the full width with zeros on the
    left (padding positions, which nothing may read); the other outputs are per row. For
    computations that read one row at a time, outputs at real positions are those of one call
    on the whole batch. With ``with_rows``, ``fn`` also receives the group's row indices
    (ascending) into ``input_ids``.
    """
    length = input_ids.shape[1]
    groups, inverse = length_groups(input_ids > 0, n_groups, group_cost)
    parts = [fn(input_ids[rows, length - w :], *([rows] if with_rows else []))
             for rows, w in groups]
    merged = []
    for i, widen in enumerate(positional):
        values = [part[i] for part in parts]
        if widen:
            values = [F.pad(v, (0, 0) * (v.dim() - 2) + (length - v.shape[1], 0)) for v in values]
        merged.append(torch.cat(values).index_select(0, inverse))
    return merged


def flat_gram(z: Tensor, max_groups: int = 8, cost: int | None = None) -> Tensor:
    """``z.flatten(1) @ z.flatten(1).T`` for right-aligned sequences z (N, L, D) whose padding
    positions are zeros that no gradient needs to reach (masked outputs).

    On the CPU, the rows are sorted into length groups (`length_groups`, a row's width
    counted from its first non-zero position) and each pair of groups multiplies only the
    positions where both can be non-zero, the last ``min(widths)``, once per pair (the
    product is symmetric): the same numbers, for a fraction of the work where most positions
    are padding (the release's views on Beauty, see docs/benchmarks.md). Positions left of a
    row's width get no gradient, as if they were constant zeros. ``cost``: the price of a
    group (`length_groups`; default `group_cost` of the width). On a GPU it is one product
    (grouping would wait for the device), as it is with ``max_groups <= 1``.
    """
    if runs_whole(z, max_groups):
        return self_dot(z)
    cost = group_cost(z.shape[-1]) if cost is None else cost
    groups, inverse = length_groups((z != 0).any(-1), max_groups, cost)
    order = torch.cat([rows for rows, _ in groups])
    return _GroupedGram.apply(z, order, [w for _, w in groups],
                              [len(rows) for rows, _ in groups]
                              ).index_select(0, inverse).index_select(1, inverse)


class _GroupedGram(torch.autograd.Function):
    """The sorted rows' (N, N) Gram matrix block by block (see `flat_gram`): group i is cut
    to its width w_i, block (i, j) uses the last ``min(w_i, w_j)`` positions of both."""

    @staticmethod
    def forward(ctx, z, order, widths, sizes):  # noqa: ANN001, ANN205 - autograd signature
        length, dim = z.shape[1:]
        parts = [z[rows, length - w :].flatten(1)
                 for rows, w in zip(order.split(sizes), widths, strict=True)]
        starts = list(accumulate(sizes, initial=0))
        out = z.new_empty(len(order), len(order))
        for i, j in _pairs(len(parts)):
            cols = min(widths[i], widths[j]) * dim
            block = parts[i][:, -cols:] @ parts[j][:, -cols:].T
            out[starts[i] : starts[i + 1], starts[j] : starts[j + 1]] = block
            out[starts[j] : starts[j + 1], starts[i] : starts[i + 1]] = block.T
        ctx.save_for_backward(z, order)
        ctx.parts, ctx.widths, ctx.sizes, ctx.starts = parts, widths, sizes, starts
        return out

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        z, order = ctx.saved_tensors
        parts, widths, starts = ctx.parts, ctx.widths, ctx.starts
        length, dim = z.shape[1:]
        sym = grad + grad.T  # d(P P^T) = (G + G^T) P
        grads = [torch.zeros_like(p) for p in parts]
        for i, j in _pairs(len(parts)):
            cols = min(widths[i], widths[j]) * dim
            g = sym[starts[i] : starts[i + 1], starts[j] : starts[j + 1]]
            grads[i][:, -cols:].addmm_(g, parts[j][:, -cols:])
            if i != j:
                grads[j][:, -cols:].addmm_(g.T, parts[i][:, -cols:])
        gz = torch.zeros_like(z)
        for rows, w, g in zip(order.split(ctx.sizes), widths, grads, strict=True):
            gz[rows, length - w :] = g.view(len(rows), w, dim)
        return gz, None, None, None


def _pairs(n: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n) for j in range(i, n)]
