"""Summary statistics of a `Sequences` (the numbers of docs/protocol.md#datasets and more)."""

from __future__ import annotations

import numpy as np

from adarec.data.sequences import Sequences


def describe(seqs: Sequences) -> dict[str, int | float]:
    """Users, items, interactions, average length and the sequence-length distribution.

    Returns a flat dict (easy to print as a table or log):
    ``users``, ``items`` (distinct items that occur), ``max_item_id``, ``interactions``,
    ``avg_length``, ``length_min``, ``length_p25``, ``length_median``, ``length_p75``,
    ``length_p90``, ``length_max``, and user counts ``users_len_le5``, ``users_len_le10``,
    ``users_len_le20``, ``users_len_gt20``. Percentiles use numpy's linear interpolation.
    """
    lengths = seqs.lengths
    n_users = len(seqs)
    out: dict[str, int | float] = {
        "users": n_users,
        "items": int(np.unique(seqs.items).size),
        "max_item_id": int(seqs.n_items),
        "interactions": seqs.n_interactions,
        "avg_length": float(lengths.mean()) if n_users else 0.0,
    }
    if n_users:
        p25, p50, p75, p90 = np.percentile(lengths, [25, 50, 75, 90]).tolist()
        lo, hi = int(lengths.min()), int(lengths.max())
    else:
        p25 = p50 = p75 = p90 = 0.0
        lo = hi = 0
    out |= {
        "length_min": lo,
        "length_p25": p25,
        "length_median": p50,
        "length_p75": p75,
        "length_p90": p90,
        "length_max": hi,
        "users_len_le5": int((lengths <= 5).sum()),
        "users_len_le10": int((lengths <= 10).sum()),
        "users_len_le20": int((lengths <= 20).sum()),
        "users_len_gt20": int((lengths > 20).sum()),
    }
    return out
