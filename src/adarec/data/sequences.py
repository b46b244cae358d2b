"""`Sequences`: every user's chronological item list, stored flat (CSR-style).

A flat layout keeps a million users cheap: one int64 array of items and one of offsets,
instead of a Python list per user.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sequences:
    """User histories. User ``i``'s items are ``items[offsets[i]:offsets[i + 1]]``.

    Attributes:
        user_ids: (U,) int64, the user ids as written in the source (or 1..U).
        items: (total,) int64, item ids in 1..n_items, chronological per user.
        offsets: (U + 1,) int64, ``offsets[0] == 0``, non-decreasing.
        n_items: the largest item id (item ids are 1..n_items; 0 is padding).
        source: where the data came from (a path or "synthetic(...)"), for messages.
    """

    user_ids: np.ndarray
    items: np.ndarray
    offsets: np.ndarray
    n_items: int
    source: str = ""

    @classmethod
    def from_lists(
        cls, seqs: list[list[int]], user_ids: list[int] | None = None, source: str = ""
    ) -> Sequences:
        """Build from a list of per-user item lists (convenient for tests and small data)."""
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        items = (
            np.fromiter((i for s in seqs for i in s), dtype=np.int64, count=int(offsets[-1]))
            if seqs
            else np.zeros(0, dtype=np.int64)
        )
        uids = (
            np.asarray(user_ids, dtype=np.int64)
            if user_ids is not None
            else np.arange(1, len(seqs) + 1, dtype=np.int64)
        )
        n_items = int(items.max()) if items.size else 0
        return cls(user_ids=uids, items=items, offsets=offsets, n_items=n_items, source=source)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.items[self.offsets[i] : self.offsets[i + 1]]

    @property
    def lengths(self) -> np.ndarray:
        """(U,) int64 number of items per user."""
        return np.diff(self.offsets)

    @property
    def n_interactions(self) -> int:
        return int(self.offsets[-1])

    def to_lists(self) -> list[list[int]]:
        return [self[i].tolist() for i in range(len(self))]
