"""The serving state: an engine, the item ids, and top-k answers for batches of queries.

A query's history is cut to its most recent ``max_len`` items (the model never saw longer
inputs) and left-padded with 0; items the user had anywhere in the given history are left
out of the answer when ``exclude_history`` is set (docs/serving.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from adarec.evaluate import topk_items
from adarec.serve.engine import ScoreEngine
from adarec.serve.ids import BadRequest, ItemId, ItemIds


class Query(NamedTuple):
    """One history in model ids ((L,) int64, oldest first), how many items, and whether the
    history's own items may come back."""

    items: np.ndarray
    k: int
    exclude_history: bool


class Answer(NamedTuple):
    """Best first; fewer than ``k`` items only when the history left fewer to recommend."""

    items: list[ItemId]
    scores: list[float]


class Recommender:
    """Answers `Query` batches with one engine call per batch."""

    def __init__(
        self, engine: ScoreEngine, ids: ItemIds, *, n_items: int, max_len: int,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.engine, self.ids = engine, ids
        self.n_items, self.max_len = n_items, max_len
        self.metadata = metadata or {}

    def query(self, history: Sequence[ItemId], k: int, exclude_history: bool) -> Query:
        """Check a client's request and put it in model ids; a `BadRequest` says what is
        wrong (empty history, unknown items, k outside 1..n_items)."""
        if not history:
            raise BadRequest("the history is empty: give at least one item")
        if not 1 <= k <= self.n_items:
            raise BadRequest(f"k must be in 1..{self.n_items} (the catalogue), got {k}")
        return Query(self.ids.to_model(history), k, exclude_history)

    def inputs(self, queries: Sequence[Query]) -> torch.Tensor:
        """(B, max_len) int64: each history's last ``max_len`` items, left-padded with 0."""
        out = np.zeros((len(queries), self.max_len), dtype=np.int64)
        for row, q in zip(out, queries, strict=True):
            recent = q.items[-self.max_len :]
            row[self.max_len - len(recent) :] = recent
        return torch.from_numpy(out)

    def answer(self, queries: Sequence[Query]) -> list[Answer]:
        """Top-k answers for ``queries``, scored as one batch."""
        if not queries:
            return []
        scores = self.engine(self.inputs(queries))  # (B, n_items + 1)
        excluded = [q.items if q.exclude_history else q.items[:0] for q in queries]
        rows = torch.repeat_interleave(torch.arange(len(queries)),
                                       torch.tensor([len(e) for e in excluded]))
        values, idx = topk_items(scores, max(q.k for q in queries), n_items=self.n_items,
                                 exclude_rows=rows,
                                 exclude_items=torch.from_numpy(np.concatenate(excluded)))
        values, idx = values.numpy(), idx.numpy()
        answers = []
        for q, v, i in zip(queries, values, idx, strict=True):
            keep = np.isfinite(v[: q.k])  # -inf: excluded, nothing left to recommend
            answers.append(Answer(self.ids.to_client(i[: q.k][keep]), v[: q.k][keep].tolist()))
        return answers
