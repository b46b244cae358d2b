"""The release's data path: raw input lengths and negatives outside the whole sequence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adarec.data.negatives import sample_negatives, seen_items
from adarec.data.sequences import Sequences
from adarec.data.splits import build_splits
from adarec.errors import AdarecError


def _draw(splits, high, seed=0):
    train = splits.train
    g = torch.Generator().manual_seed(seed)
    return sample_negatives(train.seen, train.users, train.targets, high, g)


def test_negatives_avoid_the_whole_sequence_and_reach_the_spare_row():
    # Items 1..6; user 0 saw 1..5 (4 and 5 are its valid and test items), user 1 saw 6, 1, 2, 3.
    seqs = Sequences.from_lists([[1, 2, 3, 4, 5], [6, 1, 2, 3]])
    splits = build_splits(seqs, max_len=3)
    neg = _draw(splits, high=8)  # 1..n_items + 1 = 1..7, as the release's item_size - 1
    real = splits.train.targets > 0
    assert torch.equal(neg > 0, real)  # one negative per real target position, 0 elsewhere
    assert set(neg[0][real[0]].tolist()) <= {6, 7}  # never 4 or 5 (valid / test items)
    assert set(neg[1][real[1]].tolist()) <= {4, 5, 7}
    many = torch.cat([_draw(splits, 8, seed)[0][real[0]] for seed in range(40)])
    assert set(many.tolist()) == {6, 7}  # both allowed items, the spare row 7 included


def test_shortened_sequences_exclude_only_their_kept_items():
    # The sparse protocol cuts the sequence to its last k + 3 items first (k = 1: 2, 3, 4, 5).
    seqs = Sequences.from_lists([[1, 2, 3, 4, 5]])
    splits = build_splits(seqs, shorten_seq_to=1)
    many = torch.cat([_draw(splits, 7, seed)[0] for seed in range(40)])
    assert set(many[many > 0].tolist()) == {1, 6}  # 1 was cut off; 6 is the spare row


def test_a_user_who_saw_every_item_is_an_error_not_a_hang():
    seqs = Sequences.from_lists([[1, 2, 3, 4]])
    splits = build_splits(seqs)
    with pytest.raises(AdarecError, match="all 4 items"):
        _draw(splits, high=5)  # no spare row: nothing left to draw


def test_seen_items_keys_by_user():
    seqs = Sequences.from_lists([[3, 1, 3], [2]])
    seen = seen_items(seqs, np.array([0, 1]))
    assert seen.stride == 5 and seen.keys.tolist() == [1, 3, 5 + 2]
    users = torch.tensor([0, 1])
    assert seen.contains(users, torch.tensor([[1, 2], [2, 3]])).tolist() == [[True, False],
                                                                             [True, False]]


def test_train_lengths_are_the_raw_untruncated_input_lengths():
    seqs = Sequences.from_lists([list(range(1, 61)), [1, 2, 3, 4]])
    assert build_splits(seqs, max_len=10).train.lengths.tolist() == [57, 1]  # not 10
    assert build_splits(seqs, shorten_seq_to=5).train.lengths.tolist() == [5, 1]
