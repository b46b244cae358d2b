"""build_splits on hand-checked cases (docs/protocol.md#splits) and on the real Beauty counts."""

from __future__ import annotations

import pytest
import torch

from adarec.data.reader import read_sequences
from adarec.data.sequences import Sequences
from adarec.data.splits import build_splits

# Lengths 7, 4, 3, 2, 1: train needs >= 4 items (A, B), valid >= 3 (A, B, C), test >= 2 (A-D).
A, B, C, D, E = [1, 2, 3, 4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14], [15, 16], [17]


@pytest.fixture
def seqs() -> Sequences:
    return Sequences.from_lists([A, B, C, D, E])


def _by_user(split):
    """Eval rows come sorted by history length; put them back in user order."""
    return split.take(split.users.argsort())


def _history(split) -> list[list[int]]:
    offsets = split.history_offsets.tolist()
    items = split.history_items.tolist()
    return [items[offsets[i] : offsets[i + 1]] for i in range(len(split))]


def test_full_protocol_truncates_and_left_pads(seqs):
    splits = build_splits(seqs, max_len=3)
    assert splits.max_len == 3 and splits.n_items == 17

    # train: input s[:-3], targets s[1:-2], last 3 positions kept.
    assert splits.train.users.tolist() == [0, 1]
    assert splits.train.inputs.tolist() == [[2, 3, 4], [0, 0, 8]]
    assert splits.train.targets.tolist() == [[3, 4, 5], [0, 0, 9]]

    # valid: input s[:-2], answer s[-2]; history = all of s[:-2] (beyond max_len too).
    valid = _by_user(splits.valid)
    assert valid.users.tolist() == [0, 1, 2]
    assert valid.inputs.tolist() == [[3, 4, 5], [0, 8, 9], [0, 0, 12]]
    assert valid.answers.tolist() == [6, 10, 13]
    assert _history(valid) == [[1, 2, 3, 4, 5], [8, 9], [12]]
    assert valid.history_lengths.tolist() == [5, 2, 1]

    # test: input s[:-1], answer s[-1].
    test = _by_user(splits.test)
    assert test.users.tolist() == [0, 1, 2, 3]
    assert test.inputs.tolist() == [[4, 5, 6], [8, 9, 10], [0, 12, 13], [0, 0, 15]]
    assert test.answers.tolist() == [7, 11, 14, 16]
    assert _history(test) == [[1, 2, 3, 4, 5, 6], [8, 9, 10], [12, 13], [15]]
    assert test.history_lengths.tolist() == [6, 3, 2, 1]


def test_default_max_len_pads_on_the_left(seqs):
    splits = build_splits(seqs)
    assert splits.max_len == 50
    assert splits.train.inputs.shape == (2, 50)
    assert splits.train.inputs[0, -4:].tolist() == [1, 2, 3, 4]
    assert splits.train.inputs[0, :-4].eq(0).all()
    assert _by_user(splits.test).inputs[3, -2:].tolist() == [0, 15]
    for split in (splits.train, splits.valid, splits.test):
        assert split.inputs.dtype == torch.int64


def test_shorten_seq_to(seqs):
    splits = build_splits(seqs, max_len=50, shorten_seq_to=2)  # max_len is replaced by k + 3
    splits.valid, splits.test = _by_user(splits.valid), _by_user(splits.test)
    assert splits.max_len == 5
    assert splits.train.users.tolist() == [0, 1]
    assert splits.train.inputs.tolist() == [[0, 0, 0, 3, 4], [0, 0, 0, 0, 8]]
    assert splits.train.targets.tolist() == [[0, 0, 0, 4, 5], [0, 0, 0, 0, 9]]
    assert splits.valid.users.tolist() == [0, 1, 2]
    assert splits.valid.inputs.tolist() == [[0, 0, 0, 4, 5], [0, 0, 0, 8, 9], [0, 0, 0, 0, 12]]
    assert splits.valid.answers.tolist() == [6, 10, 13]
    assert splits.test.users.tolist() == [0, 1, 2, 3]
    assert splits.test.inputs[:, -2:].tolist() == [[5, 6], [9, 10], [12, 13], [0, 15]]
    assert splits.test.inputs[:, :3].eq(0).all()
    # The excluded history is still the whole history, not the last k items.
    assert _history(splits.test) == [[1, 2, 3, 4, 5, 6], [8, 9, 10], [12, 13], [15]]
    assert splits.test.history_lengths.tolist() == [6, 3, 2, 1]


def test_shorten_seq_to_three_and_bad_values(seqs):
    assert build_splits(seqs, shorten_seq_to=3).max_len == 6
    with pytest.raises(ValueError, match="shorten_seq_to must be >= 1"):
        build_splits(seqs, shorten_seq_to=0)
    with pytest.raises(ValueError, match="max_len must be >= 1"):
        build_splits(seqs, max_len=0)


def test_history_coo(seqs):
    rows, items = _by_user(build_splits(seqs).test).history_coo(1, 3)
    assert rows.tolist() == [0, 0, 0, 1, 1]
    assert items.tolist() == [8, 9, 10, 12, 13]


def test_train_targets_are_next_items():
    seqs = Sequences.from_lists([list(range(1, 12)), list(range(20, 26))])
    train = build_splits(seqs, max_len=5).train
    mask = train.inputs > 0
    assert torch.equal(mask, train.targets > 0)
    # Items are consecutive integers, so the next item is the input + 1.
    assert torch.equal(train.targets[mask], train.inputs[mask] + 1)


def test_beauty_counts(beauty_file):
    seqs = read_sequences(beauty_file)
    assert (len(seqs), seqs.n_items, seqs.n_interactions) == (22_363, 12_101, 198_502)
    splits = build_splits(seqs)
    assert len(splits.train) == len(splits.valid) == len(splits.test) == 22_363
    assert splits.n_items == 12_101
    assert int(splits.test.history_lengths.sum()) + len(splits.test) == 198_502
    assert torch.unique(torch.cat([splits.test.history_items, splits.test.answers])).numel() == (
        12_101
    )
    sparse = build_splits(seqs, shorten_seq_to=5)  # every user has >= 5 items: none dropped
    assert sparse.max_len == 8 and len(sparse.train) == 22_363
    assert int((sparse.test.inputs > 0).sum(dim=1).max()) == 5
    assert int(sparse.test.history_lengths.sum()) + len(sparse.test) == 198_502


def test_eval_rows_are_sorted_by_history_length(seqs):
    for split in (build_splits(seqs).valid, build_splits(seqs).test):
        lengths = split.history_lengths
        assert torch.equal(lengths, lengths.sort().values)
