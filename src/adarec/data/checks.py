"""Checks that interactions can be trained on, and a fingerprint that ties a run to its data.

Item ids index the models' item tables directly (one row per id up to the largest), so ids
must be close to 1..N. A run stores the fingerprint of its data (`DataInfo.fingerprint`),
and ``adarec evaluate`` refuses a data file that has changed since
(docs/protocol.md#data-checks).
"""

from __future__ import annotations

import hashlib

import numpy as np

from adarec.data.sequences import Sequences
from adarec.errors import AdarecError

# Refuse a table with more than this many rows per distinct item, once it is this large:
# small gaps (filtered items) are fine, ids like 10**12 or a few ids near 5*10**7 are not.
MAX_ROWS_PER_ITEM = 10
MIN_REFUSED_ROWS = 1_000_000


def check_dense_ids(seqs: Sequences) -> None:
    """Refuse item ids so sparse or large that the item table would be mostly empty rows."""
    distinct = int(np.unique(seqs.items).size)
    if seqs.n_items > max(MAX_ROWS_PER_ITEM * distinct, MIN_REFUSED_ROWS):
        raise AdarecError(
            f"{seqs.source}: item ids go up to {seqs.n_items:,} but only {distinct:,} distinct "
            f"items appear; the models keep one table row per id, so renumber the items "
            f"1..{distinct:,} (adarec data import does this for an interaction log)"
        )


def fingerprint(seqs: Sequences) -> str:
    """A short SHA-256 of the users, their order and their items (not of the file's bytes,
    so a copy in another folder or with other line endings matches)."""
    digest = hashlib.sha256()
    for part in (seqs.user_ids, seqs.offsets, seqs.items):
        digest.update(np.ascontiguousarray(part, dtype="<i8").tobytes())
    return digest.hexdigest()[:16]


def check_same_data(seqs: Sequences, *, n_items: int, expected: str) -> None:
    """``seqs`` must be the data a model was trained on: ``expected`` is the run's
    fingerprint ("" for runs written before fingerprints, which are checked on items only)."""
    if seqs.n_items > n_items:
        raise AdarecError(f"{seqs.source} has {seqs.n_items} items but the model knows "
                          f"{n_items}: not the data it was trained on")
    if expected and fingerprint(seqs) != expected:
        raise AdarecError(
            f"{seqs.source} has changed since the model was trained (data fingerprint "
            f"{fingerprint(seqs)}, the run's is {expected}; now {len(seqs)} users, "
            f"{seqs.n_items} items, {seqs.n_interactions} interactions); "
            "evaluate on the data it was trained on"
        )
