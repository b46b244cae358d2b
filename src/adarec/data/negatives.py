"""Negatives drawn outside each user's whole sequence: the original release's data path.

The release's training dataset draws one negative per input position with
``neg_sample(set(items), item_size)``: uniform over 1..item_size - 1 = 1..n_items + 1 (its
item table has a spare row after the last item) and redrawn until it is outside the user's
*whole* sequence, the validation and test items included (docs/release.md). Here the same
rejection sampling runs vectorised over all training rows at once, once per epoch, so a
training step never waits for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from adarec.data.sequences import Sequences
from adarec.errors import AdarecError


@dataclass
class SeenItems:
    """Every user's set of items, as sorted unique keys ``user * stride + item``.

    ``user`` is the row index into the source `Sequences`; ``stride`` exceeds every item id
    that is looked up, so keys of different users never collide.
    """

    keys: Tensor  # (N,) int64, sorted, unique
    stride: int

    def to(self, device: torch.device | str) -> SeenItems:
        return SeenItems(self.keys.to(device), self.stride)

    def contains(self, users: Tensor, items: Tensor) -> Tensor:
        """Whether ``items`` (U, ...) lie in the set of ``users`` (U,): a bool (U, ...)."""
        query = users.view(-1, *[1] * (items.dim() - 1)) * self.stride + items
        if self.keys.numel() == 0:
            return torch.zeros_like(query, dtype=torch.bool)
        at = torch.searchsorted(self.keys, query).clamp(max=self.keys.numel() - 1)
        return self.keys[at] == query


def seen_items(seqs: Sequences, users: np.ndarray, keep_last: int | None = None) -> SeenItems:
    """The item sets of ``users`` (rows of ``seqs``): each one's whole sequence, or only its
    last ``keep_last`` items (the sparse protocol cuts the sequence first, as the release
    does). The stride is ``n_items + 2``: items and the spare row n_items + 1 fit."""
    lengths = seqs.lengths[users]
    kept = lengths if keep_last is None else np.minimum(lengths, keep_last)
    owner = np.repeat(users, kept)
    # Positions of each user's kept items: the last `kept` of its run in `seqs.items`.
    starts = seqs.offsets[users] + lengths - kept
    first = np.repeat(np.cumsum(kept) - kept, kept)
    pos = np.repeat(starts, kept) + np.arange(int(kept.sum())) - first
    stride = seqs.n_items + 2
    keys = torch.from_numpy(np.unique(owner.astype(np.int64) * stride + seqs.items[pos]))
    return SeenItems(keys, stride)


def sample_negatives(
    seen: SeenItems, users: Tensor, targets: Tensor, high: int, generator: torch.Generator,
) -> Tensor:
    """One negative per real target position: (U, L) int64, uniform over ``1..high - 1``
    outside the row's item set, 0 where ``targets`` is padding.

    Exact rejection sampling (every draw that hits the set is redrawn until none does), so
    the negatives are distributed as the release's. Raises `AdarecError` when some user's
    set leaves no item to draw, where the release would loop forever.
    """
    if not 1 < high <= seen.stride:
        raise ValueError(f"high must be in 2..{seen.stride}, got {high}")
    owners = seen.keys // seen.stride
    if owners.numel() and int(torch.bincount(owners).max()) >= high - 1:
        raise AdarecError(f"a user has interacted with all {high - 1} items: "
                          "no negative can be drawn outside the sequence")
    device = targets.device

    def draw() -> Tensor:
        return torch.randint(1, high, targets.shape, generator=generator,
                             device=generator.device).to(device)

    neg = draw()
    while True:
        hit = seen.contains(users, neg)
        if not bool(hit.any()):  # one device read per round; a few rounds per epoch
            break
        neg = torch.where(hit, draw(), neg)
    return torch.where(targets > 0, neg, 0)
