"""Top-k recommendations for given histories with a trained model (serving, no answers)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from adarec.data.sequences import Sequences
from adarec.data.splits import latest_inputs, trim_left
from adarec.errors import AdarecError
from adarec.evaluate import topk_items


@torch.inference_mode()
def recommend(
    model: nn.Module, seqs: Sequences, *, k: int, n_items: int, max_len: int,
    batch_size: int = 512, exclude_history: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best next items after each user's whole sequence.

    Returns (U, k) item ids and their scores, in the order of ``seqs``. Items the user has
    already had are not recommended unless ``exclude_history`` is False.
    """
    if seqs.n_items > n_items:
        raise AdarecError(
            f"{seqs.source} mentions item {seqs.n_items}, but the model knows items 1..{n_items}"
        )
    if not 1 <= k <= n_items:
        raise AdarecError(f"k must be in 1..{n_items}, got {k}")
    device = next(model.parameters()).device
    inputs = latest_inputs(seqs, max_len).to(device)
    model.eval()
    items, scores = [], []
    for start in range(0, len(seqs), batch_size):
        stop = min(start + batch_size, len(seqs))
        (batch,) = trim_left(inputs[start:stop])
        rows = exclude = None
        if exclude_history:
            lengths = torch.from_numpy(seqs.lengths[start:stop])
            rows = torch.repeat_interleave(torch.arange(stop - start), lengths)
            exclude = torch.from_numpy(seqs.items[seqs.offsets[start] : seqs.offsets[stop]])
        values, idx = topk_items(model.score(batch), k, n_items=n_items,
                                 exclude_rows=rows, exclude_items=exclude)
        items.append(idx.cpu())
        scores.append(values.cpu())
    return torch.cat(items).numpy(), torch.cat(scores).float().numpy()


def shortfall(scores: np.ndarray, k: int) -> str:
    """``""`` when every row of ``scores`` (U, k) holds ``k`` recommendations, else a note
    saying how many users got fewer (a -inf score marks a slot with no item left)."""
    counts = (scores != -np.inf).sum(axis=1)
    short = counts < k
    if not short.any():
        return ""
    return (f" ({int(short.sum())} users had fewer than {k} items left to recommend, the "
            f"fewest {int(counts.min())}; {int(counts.sum())} rows in all)")
