"""Synthetic interaction sequences with intent structure, generated on the fly.

Items are split into categories (coarse intents), each split into sub-categories (fine
intents). A user has a main category and a current sub-category that drifts along the
sequence: at each step it switches to another sub-category of the category with probability
``p_switch_sub`` and, rarely (``p_switch_category``), to a new category. The next item comes
from the current sub-category with a Zipf-like popularity skew, except with probability
``p_noise`` when it comes from the global popularity. So "the next item is in the same
sub-category as the last ones" predicts far better than popularity, which is what a sequence
model should learn.

Everything is vectorised over users; the only Python loop runs over sequence positions.
"""

from __future__ import annotations

import numpy as np

from adarec.data.sequences import Sequences
from adarec.errors import AdarecError


def item_groups(n_items: int, n_groups: int, rng: np.random.Generator) -> np.ndarray:
    """(n_items,) group index 0..n_groups-1 of items 1..n_items (entry ``i`` is item ``i + 1``).

    Groups are random and as equal in size as possible.
    """
    return (np.arange(n_items) * n_groups // n_items)[rng.permutation(n_items)]


def _lengths(
    n_users: int, min_len: int, max_len: int, sparse_share: float, rng: np.random.Generator
) -> np.ndarray:
    """Half sparse users (``min_len`` or ``min_len + 1`` items), the rest geometric tails."""
    sparse = rng.random(n_users) < sparse_share
    short = min_len + rng.integers(0, 2, n_users)
    long = min_len + 1 + rng.geometric(1 / 8, n_users)
    return np.minimum(np.where(sparse, short, long), max_len).astype(np.int64)


def generate(
    n_users: int = 2000,
    n_items: int = 500,
    *,
    seed: int = 0,
    n_categories: int = 10,
    n_subcategories: int = 5,
    min_len: int = 5,
    max_len: int = 30,
    sparse_share: float = 0.45,
    p_switch_sub: float = 0.15,
    p_switch_category: float = 0.03,
    p_noise: float = 0.05,
    zipf_exponent: float = 1.0,
) -> Sequences:
    """Generate ``n_users`` sequences over items ``1..n_items``, deterministic from ``seed``.

    Args:
        n_users: number of users (user ids ``1..n_users``).
        n_items: catalogue size; needs at least one item per sub-category.
        seed: seed of the numpy random generator; the same arguments give the same data.
        n_categories: coarse intents (item categories).
        n_subcategories: fine intents per category.
        min_len: shortest sequence (5, like the 5-core benchmarks).
        max_len: longest sequence.
        sparse_share: share of users with only ``min_len`` or ``min_len + 1`` items.
        p_switch_sub: per-step chance to move to another sub-category of the same category.
        p_switch_category: per-step chance to move to a new category (and sub-category).
        p_noise: per-step chance to draw from global popularity instead of the sub-category.
        zipf_exponent: popularity skew inside each sub-category (item of rank r has weight
            ``r ** -zipf_exponent``).
    """
    n_groups = n_categories * n_subcategories
    if n_users < 1 or n_categories < 1 or n_subcategories < 1:
        raise AdarecError("synthetic data needs n_users, n_categories, n_subcategories >= 1")
    if n_items < n_groups:
        raise AdarecError(
            f"synthetic data needs n_items >= n_categories * n_subcategories ({n_groups}), "
            f"got {n_items}"
        )
    if not 1 <= min_len <= max_len:
        raise AdarecError(f"synthetic data needs 1 <= min_len <= max_len, got {min_len}, {max_len}")
    rng = np.random.default_rng(seed)

    group = item_groups(n_items, n_groups, rng)  # (I,)
    # Items sorted by group, then by their popularity rank inside the group (random order).
    by_group = np.lexsort((rng.random(n_items), group))  # (I,) item index, grouped
    group_sorted = group[by_group]
    group_start = np.searchsorted(group_sorted, np.arange(n_groups))  # (G,)
    group_stop = np.append(group_start[1:], n_items)  # (G,)
    rank = np.arange(n_items) - group_start[group_sorted] + 1  # 1-based rank inside group
    weight = rank.astype(np.float64) ** -zipf_exponent
    # Flat CDF: group g's cumulative weights, normalised to (0, 1] and shifted by g, so one
    # searchsorted over `g + u` draws an item from group g for every user at once.
    cum = np.cumsum(weight)
    before = np.concatenate(([0.0], cum))[group_start]  # (G,) weight mass before each group
    totals = np.diff(np.append(before, cum[-1]))  # (G,)
    cdf = group_sorted + (cum - before[group_sorted]) / totals[group_sorted]
    # Global popularity for the noise draws, and category popularity for the intents.
    global_p = weight / weight.sum()
    cat_w = np.arange(1, n_categories + 1, dtype=np.float64) ** -0.5
    cat_p = rng.permutation(cat_w / cat_w.sum())

    lengths = _lengths(n_users, min_len, max_len, sparse_share, rng)
    offsets = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    items = np.empty(int(offsets[-1]), dtype=np.int64)

    cat = rng.choice(n_categories, n_users, p=cat_p)  # (U,) current category
    sub = rng.integers(0, n_subcategories, n_users)  # (U,) current sub-category
    for t in range(int(lengths.max())):
        users = np.nonzero(lengths > t)[0]  # (A,) users still active at position t
        n = len(users)
        if t > 0:
            u = rng.random(n)
            new_cat = users[u < p_switch_category]
            cat[new_cat] = rng.choice(n_categories, len(new_cat), p=cat_p)
            moved = users[u < p_switch_category + p_switch_sub]
            # Shift by 1..S-1 so a sub-category switch always lands somewhere new.
            step = rng.integers(1, max(n_subcategories, 2), len(moved))
            sub[moved] = (sub[moved] + step) % n_subcategories
        g = cat[users] * n_subcategories + sub[users]  # (A,)
        pos = np.searchsorted(cdf, g + rng.random(n))
        # Rounding can push g + u onto a neighbouring group's edge; keep the draw in group g.
        pos = np.clip(pos, group_start[g], group_stop[g] - 1)
        noise = rng.random(n) < p_noise
        pos[noise] = rng.choice(n_items, int(noise.sum()), p=global_p)
        items[offsets[users] + t] = by_group[pos] + 1

    return Sequences(
        user_ids=np.arange(1, n_users + 1, dtype=np.int64),
        items=items,
        offsets=offsets,
        n_items=n_items,
        source=f"synthetic(n_users={n_users}, n_items={n_items}, seed={seed})",
    )
