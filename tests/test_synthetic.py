"""The synthetic generator: deterministic, valid, and sequential enough to beat popularity."""

from __future__ import annotations

import numpy as np
import pytest

from adarec.data.sequences import Sequences
from adarec.data.synthetic import generate
from adarec.errors import AdarecError


def _same(a: Sequences, b: Sequences) -> bool:
    return all(
        np.array_equal(getattr(a, f), getattr(b, f)) for f in ("user_ids", "items", "offsets")
    )


def test_deterministic_per_seed():
    assert _same(generate(300, 100, seed=5), generate(300, 100, seed=5))
    assert not _same(generate(300, 100, seed=5), generate(300, 100, seed=6))


def test_valid_sequences():
    seqs = generate(2000, 500, seed=0)
    lengths = seqs.lengths
    assert len(seqs) == 2000 and seqs.n_items == 500
    assert seqs.user_ids.tolist() == list(range(1, 2001))
    assert seqs.offsets[0] == 0 and seqs.offsets[-1] == seqs.items.size
    assert lengths.min() >= 5 and lengths.max() <= 30
    assert (lengths == 5).sum() > 200 and (lengths == 6).sum() > 200  # a sparse share
    assert (lengths >= 15).sum() > 100  # and longer users
    assert seqs.items.dtype == np.int64
    assert seqs.items.min() >= 1 and seqs.items.max() <= 500
    assert np.unique(seqs.items).size > 450  # (nearly) every item occurs
    assert seqs.source == "synthetic(n_users=2000, n_items=500, seed=0)"


def test_bad_arguments():
    with pytest.raises(AdarecError, match="n_items"):
        generate(10, 20, n_categories=5, n_subcategories=5)
    with pytest.raises(AdarecError, match="min_len"):
        generate(10, 100, min_len=6, max_len=5)


def _hit_rates(seqs: Sequences, k: int = 10) -> tuple[float, float]:
    """HR@k on each user's last item: (popularity, first-order transition counts).

    Both models are fitted on the items before each user's last one.
    """
    n = seqs.n_items + 1
    last = seqs.offsets[1:] - 1  # (U,) index of each last item
    fit = np.ones(seqs.items.size, dtype=bool)
    fit[last] = False
    popularity = np.bincount(seqs.items[fit], minlength=n).astype(np.float64)
    popularity[0] = -1
    # Pairs (j, j + 1) inside one user, both in the fitting part.
    same_user = np.ones(seqs.items.size - 1, dtype=bool)
    same_user[seqs.offsets[1:-1] - 1] = False
    pair = same_user & fit[1:]
    trans = np.zeros((n, n))
    np.add.at(trans, (seqs.items[:-1][pair], seqs.items[1:][pair]), 1.0)

    answers = seqs.items[last]
    top_pop = np.argsort(-popularity)[:k]
    pop_hr = np.isin(answers, top_pop).mean()
    scores = trans[seqs.items[last - 1]] + 1e-6 * popularity  # (U, n), ties by popularity
    top_trans = np.argsort(-scores, axis=1)[:, :k]
    trans_hr = (top_trans == answers[:, None]).any(axis=1).mean()
    return float(pop_hr), float(trans_hr)


def test_sequential_structure_beats_popularity():
    pop_hr, trans_hr = _hit_rates(generate(3000, 400, seed=1))
    assert trans_hr > 3 * pop_hr
    assert trans_hr > 0.4
