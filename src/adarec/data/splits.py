"""Leave-one-out splits (docs/protocol.md#splits), built with array operations, no per-user loop.

For a user sequence ``s`` of length ``n``:

* train: input ``s[:-3]``, target at every position the next item (``s[1:-2]``);
* valid: input ``s[:-2]``, answer ``s[-2]``;
* test:  input ``s[:-1]``, answer ``s[-1]``.

Inputs keep their last ``max_len`` items and are left-padded with 0. Under the sparse
protocol (``shorten_seq_to = k``) only the last ``k`` items of each split's history are kept
and ``max_len`` becomes ``k + 3``. Users too short for a split are left out of it (train needs
4 items, valid 3, test 2). The items excluded from ranking are always the user's *whole*
history before the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from adarec.data.negatives import SeenItems, seen_items
from adarec.data.sequences import Sequences

# How many items each split holds out at the end of a sequence (input ends before them).
_HELD_OUT = {"train": 3, "valid": 2, "test": 1}


@dataclass
class TrainSplit:
    """One training row per user. ``inputs`` and ``targets`` are (U, L) int64, 0 = padding.

    ``lengths`` (U,) is each input's length before it is cut to ``max_len`` (the release's
    controller embeds it; under the sparse protocol, after shortening). ``seen`` holds every
    user's whole sequence, valid and test items included (shortened likewise), which the
    release's negatives avoid (`adarec.data.negatives`).
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    users: torch.Tensor  # (U,) row index into the source `Sequences`
    lengths: torch.Tensor | None = None
    seen: SeenItems | None = None

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def to(self, device: torch.device | str) -> TrainSplit:
        return TrainSplit(
            *(t.to(device) for t in (self.inputs, self.targets, self.users)),
            lengths=None if self.lengths is None else self.lengths.to(device),
            seen=None if self.seen is None else self.seen.to(device),
        )

    def take(self, rows: torch.Tensor) -> TrainSplit:
        """The rows ``rows`` as a new split (``seen`` is keyed by user, so it is shared)."""
        return TrainSplit(self.inputs[rows], self.targets[rows], self.users[rows],
                          lengths=None if self.lengths is None else self.lengths[rows],
                          seen=self.seen)


@dataclass
class EvalSplit:
    """Validation or test rows.

    Attributes:
        inputs: (U, L) int64 left-padded inputs.
        answers: (U,) int64 held-out item.
        history_lengths: (U,) int64 length of the user's whole history before the answer
            (used for the length buckets; not truncated by ``max_len`` or ``shorten_seq_to``).
        history_items: (H,) int64 every user's whole history, flat; these items are excluded
            from the ranking.
        history_offsets: (U + 1,) int64 CSR offsets into ``history_items``.
        users: (U,) int64 row index into the source `Sequences`.
    """

    inputs: torch.Tensor
    answers: torch.Tensor
    history_lengths: torch.Tensor
    history_items: torch.Tensor
    history_offsets: torch.Tensor
    users: torch.Tensor

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def to(self, device: torch.device | str) -> EvalSplit:
        return EvalSplit(
            *(
                getattr(self, f).to(device)
                for f in (
                    "inputs",
                    "answers",
                    "history_lengths",
                    "history_items",
                    "history_offsets",
                    "users",
                )
            )
        )

    def take(self, rows: torch.Tensor) -> EvalSplit:
        """The rows ``rows`` (any order) as a new split, histories included."""
        counts = self.history_offsets[1:] - self.history_offsets[:-1]
        offsets = torch.zeros(len(rows) + 1, dtype=torch.int64, device=rows.device)
        torch.cumsum(counts[rows], 0, out=offsets[1:])
        # Flat positions of every chosen row's history, in the new row order.
        owner = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), counts[rows])
        pos = torch.arange(int(offsets[-1]), device=rows.device) - offsets[owner]
        pos = pos + self.history_offsets[rows][owner]
        return EvalSplit(
            inputs=self.inputs[rows], answers=self.answers[rows],
            history_lengths=self.history_lengths[rows], history_items=self.history_items[pos],
            history_offsets=offsets, users=self.users[rows],
        )

    def history_coo(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, items) of the history entries of rows ``start:stop``; rows count from 0."""
        lo, hi = self.history_offsets[start], self.history_offsets[stop]
        items = self.history_items[lo:hi]
        counts = self.history_offsets[start + 1 : stop + 1] - self.history_offsets[start:stop]
        rows = torch.repeat_interleave(
            torch.arange(stop - start, device=items.device), counts, output_size=items.numel()
        )
        return rows, items


@dataclass
class Splits:
    """The three splits of one dataset plus the facts learned from it."""

    train: TrainSplit
    valid: EvalSplit
    test: EvalSplit
    n_items: int
    max_len: int


def _window(
    seqs: Sequences, users: np.ndarray, end: np.ndarray, width: int, length: int, shift: int = 0
) -> np.ndarray:
    """Left-padded (U, length) matrix of the last ``width`` items before ``end`` (+ ``shift``).

    ``end`` is an absolute index into ``seqs.items`` (exclusive); ``width <= length``.
    """
    start = np.maximum(end - width, seqs.offsets[users])  # (U,)
    cols = np.arange(length, dtype=np.int64) - length  # (L,) -L..-1
    idx = end[:, None] + cols[None, :]  # (U, L) absolute positions
    valid = idx >= start[:, None]
    gathered = seqs.items[np.clip(idx + shift, 0, max(len(seqs.items) - 1, 0))]
    return np.where(valid, gathered, 0)


def _eval_split(seqs: Sequences, held_out: int, width: int, max_len: int) -> EvalSplit:
    lengths = seqs.lengths
    users = np.nonzero(lengths >= held_out + 1)[0]
    # Rows ordered by history length: a batch of neighbours then has little padding to trim.
    users = users[np.argsort(lengths[users], kind="stable")]
    end = seqs.offsets[users] + lengths[users] - held_out  # index of the answer
    inputs = _window(seqs, users, end, width, max_len)
    hist_len = lengths[users] - held_out
    hist_offsets = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(hist_len, out=hist_offsets[1:])
    # Absolute item positions of every kept user's history, flat and in user order.
    pos = np.arange(hist_offsets[-1], dtype=np.int64)
    owner = np.repeat(np.arange(len(users)), hist_len)
    pos = pos - hist_offsets[owner] + seqs.offsets[users][owner]
    return EvalSplit(
        inputs=torch.from_numpy(inputs),
        answers=torch.from_numpy(seqs.items[end].copy()),
        history_lengths=torch.from_numpy(hist_len.astype(np.int64)),
        history_items=torch.from_numpy(seqs.items[pos]),
        history_offsets=torch.from_numpy(hist_offsets),
        users=torch.from_numpy(users.astype(np.int64)),
    )


def build_splits(
    seqs: Sequences, max_len: int = 50, shorten_seq_to: int | None = None
) -> Splits:
    """Leave-one-out train/valid/test rows of ``seqs`` (see module docstring).

    Args:
        seqs: the users' chronological sequences.
        max_len: inputs keep their last ``max_len`` items (ignored when shortening).
        shorten_seq_to: the sparse protocol's ``k``; ``None`` for the full protocol.
    """
    if shorten_seq_to is not None:
        if shorten_seq_to < 1:
            raise ValueError(f"shorten_seq_to must be >= 1, got {shorten_seq_to}")
        max_len, width = shorten_seq_to + 3, shorten_seq_to
    else:
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        width = max_len

    lengths = seqs.lengths
    train_users = np.nonzero(lengths >= _HELD_OUT["train"] + 1)[0]
    end = seqs.offsets[train_users] + lengths[train_users] - _HELD_OUT["train"]
    train = TrainSplit(
        inputs=torch.from_numpy(_window(seqs, train_users, end, width, max_len)),
        targets=torch.from_numpy(_window(seqs, train_users, end, width, max_len, shift=1)),
        users=torch.from_numpy(train_users.astype(np.int64)),
        lengths=torch.from_numpy(
            np.minimum(lengths[train_users] - _HELD_OUT["train"], shorten_seq_to or np.inf)
            .astype(np.int64)),
        seen=seen_items(seqs, train_users,
                        None if shorten_seq_to is None else shorten_seq_to + 3),
    )
    return Splits(
        train=train,
        valid=_eval_split(seqs, _HELD_OUT["valid"], width, max_len),
        test=_eval_split(seqs, _HELD_OUT["test"], width, max_len),
        n_items=seqs.n_items,
        max_len=max_len,
    )


def trim_left(inputs: torch.Tensor, *aligned: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Cut the columns that are padding in every row of ``inputs`` (and of ``aligned``).

    Keeps at least one column. Costs one device-to-host read of the longest row length.
    """
    if not inputs.numel():
        return (inputs, *aligned)
    length = inputs.shape[1]
    nonzero = inputs != 0
    first = nonzero.to(torch.int8).argmax(1)  # first real column (0 for empty rows)
    width = int(torch.where(nonzero.any(1), length - first, 0).max().clamp(min=1))
    return tuple(t[:, -width:] for t in (inputs, *aligned))


def left_pad(inputs: torch.Tensor, length: int) -> torch.Tensor:
    """Left-pad (U, L) inputs with zeros to (U, length); ``length >= L``."""
    return torch.nn.functional.pad(inputs, (length - inputs.shape[1], 0))


def latest_inputs(seqs: Sequences, max_len: int) -> torch.Tensor:
    """(U, max_len) every user's last ``max_len`` items, left-padded: the input for
    recommending what comes after the whole sequence (serving, not evaluation)."""
    users = np.arange(len(seqs))
    return torch.from_numpy(_window(seqs, users, seqs.offsets[1:], max_len, max_len))
