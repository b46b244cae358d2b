"""The interface every model of this package has (as in RecBole: loss, score, set-up).

A model maps left-padded item ids (B, L), 0 = padding, to:

* ``item_table`` (C, D): the item embeddings the outputs are scored against;
* ``loss(batch) -> LossOutput``: the training loss with its named parts;
* ``score(input_ids) -> (B, C)``: scores of the next item after each input, C >= n_items + 1;
* ``before_training(train_inputs, seed)``: run once before its first epoch (k-means), inside
  ``evaluating()``, which switches to eval mode (no dropout) and then restores the mode;
* ``stages() -> list[Stage]``: what trains, one after the other, each with its own optimiser
  and early stopping: the model itself, or (the release's ensemble) each of its members.

`Recommender` is the interface as a `Protocol` (every built model satisfies it;
``tests/test_interface.py`` checks); `Model` and `SequenceModel` are the small base
classes that give its shared parts once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

import torch.nn.functional as F
from torch import Tensor, nn

from adarec.model.encoder import attention_mask

if TYPE_CHECKING:
    from adarec.model.losses import LossOutput


class Batch(NamedTuple):
    """Training rows: ``inputs`` and next-item ``targets``, both (B, L) int64, 0 = padding.

    ``lengths`` (B,): each input's length before it was cut to ``max_len`` (None: count the
    real items). ``negatives`` (B, L): one sampled negative per target position, drawn by the
    data path (the original release's; None: a loss that needs them draws its own).
    """

    inputs: Tensor
    targets: Tensor
    lengths: Tensor | None = None
    negatives: Tensor | None = None


class Stage(NamedTuple):
    """One part of a model that trains on its own: ``tag`` names it in the logs ('' for a
    model that trains whole, ``/member0``... for the members of an ensemble)."""

    tag: str
    model: nn.Module


@runtime_checkable
class Recommender(Protocol):
    """What the training loop, the evaluation and the CLI use of a model."""

    @property
    def item_table(self) -> Tensor: ...

    def loss(self, batch: Batch) -> LossOutput: ...

    def score(self, input_ids: Tensor) -> Tensor: ...

    def evaluating(self) -> AbstractContextManager[None]: ...

    def before_training(self, train_inputs: Tensor, seed: int) -> None: ...

    def stages(self) -> list[Stage]: ...


class Model(nn.Module):
    """What every model shares, whatever its parts."""

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """Eval mode (no dropout) inside the block, the previous mode after it: for set-up
        passes such as the k-means initialisation of intent centres."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    def before_training(self, train_inputs: Tensor, seed: int) -> None:
        """Nothing to prepare by default."""

    def stages(self) -> list[Stage]:
        """The parts that train one after the other (see `Stage`): here the model itself."""
        return [Stage("", self)]


class SequenceModel(Model):
    """A model with an ``embedding`` (`SequenceEmbedding`) whose item table also scores the
    outputs, and (unless it overrides ``forward``) a ``transformer`` over the embedding."""

    embedding: nn.Module
    transformer: nn.Module

    @property
    def item_table(self) -> Tensor:
        """(C, D) item embeddings, shared by the input and the output."""
        return self.embedding.items.weight

    def forward(self, input_ids: Tensor, last_only: bool = False) -> Tensor:
        """(B, L) ids -> (B, L, D) sequence representations, or (B, 1, D) at the last
        position alone (all that scoring needs, and cheaper)."""
        return self.transformer(self.embedding(input_ids), attention_mask(input_ids),
                                last_only=last_only)

    def score(self, input_ids: Tensor) -> Tensor:
        return self(input_ids, last_only=True)[:, -1] @ self.item_table.T  # (B, C)

    def encode_full(self, input_ids: Tensor) -> Tensor:
        """(B, L) ids, left-padded to ``max_len`` -> (B, max_len, D): every position's output
        as SASRec's ports in ICLRec and ELCRec compute it, padding included (a padding query
        attends to every key of its row, `attention_mask`'s ``"all"``), in one pass without
        length groups. What ELCRec's pooling over all positions reads
        (docs/method.md#elcrec-pooling); real positions equal ``forward``'s."""
        return full_width_pass(self.transformer, self.embedding, input_ids)


def full_width_pass(transformer: nn.Module, embedding: nn.Module, input_ids: Tensor) -> Tensor:
    """``transformer`` over ``embedding`` of ``input_ids`` left-padded to the embedding's
    ``max_len`` (its number of positions), with padding queries attending to their whole row:
    see `SequenceModel.encode_full`."""
    ids = left_pad_ids(input_ids, embedding.positions.num_embeddings)
    return transformer(embedding(ids), attention_mask(ids, "all"), whole=True)


def left_pad_ids(input_ids: Tensor, length: int) -> Tensor:
    """(B, L) -> (B, length) with zeros on the left (``length >= L``)."""
    if input_ids.shape[1] > length:
        raise ValueError(f"inputs of width {input_ids.shape[1]} exceed max_len={length}")
    return F.pad(input_ids, (length - input_ids.shape[1], 0))
