"""SASRec: item + position embedding, transformer, scores against the shared item table.

Every model in this package has the same small interface (as in RecBole):

* ``forward(input_ids, last_only=False) -> (B, L, D)`` sequence representations, or
  (B, 1, D) at the last position alone (which is all that scoring needs, and cheaper);
* ``loss(batch) -> LossOutput`` the training loss with its named parts;
* ``score(input_ids) -> (B, C)`` scores of the next item after each input, C >= n_items + 1;
* ``before_training(train_inputs, seed)`` run once before the first epoch.

Auxiliary parts (ELCRec's `IntentLearning`) are composed in: SASRec + intent learning *is*
ELCRec. Each part is called as ``part(encode, inputs, hidden)`` and returns a NamedTuple of
named, unweighted losses; `weigh` combines them with the recommendation loss.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from adarec.model.encoder import SequenceEmbedding, Transformer, attention_mask
from adarec.model.interface import Model
from adarec.model.losses import LossOutput, weigh


class Batch(NamedTuple):
    """Training rows: ``inputs`` and next-item ``targets``, both (B, L) int64, 0 = padding."""

    inputs: torch.Tensor
    targets: torch.Tensor


class SASRec(Model):
    """A unidirectional transformer recommender (Kang & McAuley, 2018), plus optional parts."""

    def __init__(
        self, *, embedding: SequenceEmbedding, transformer: Transformer, rec_loss: nn.Module,
        aux: dict[str, nn.Module] | None = None, loss_weights: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.embedding = embedding
        self.transformer = transformer
        self.rec_loss = rec_loss
        self.aux = nn.ModuleDict(aux or {})
        self.loss_weights = {"rec": 1.0, **(loss_weights or {})}

    @property
    def item_table(self) -> torch.Tensor:
        """(C, D) item embeddings, shared by the input and the output."""
        return self.embedding.items.weight

    def forward(self, input_ids: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        return self.transformer(self.embedding(input_ids), attention_mask(input_ids),
                                last_only=last_only)

    def loss(self, batch: Batch) -> LossOutput:
        hidden = self(batch.inputs)  # (B, L, D)
        losses = {"rec": self.rec_loss(hidden, batch.targets, self.item_table, batch.inputs)}
        for part in self.aux.values():
            losses.update(part(self, batch.inputs, hidden)._asdict())
        return weigh(losses, self.loss_weights)

    def score(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self(input_ids, last_only=True)[:, -1] @ self.item_table.T  # (B, C)

    def before_training(self, train_inputs: torch.Tensor, seed: int) -> None:
        """Let each auxiliary part prepare itself (ELCRec: k-means on the centres)."""
        was_training = self.training
        self.eval()
        for part in self.aux.values():
            part.initialise(self, train_inputs, seed)
        self.train(was_training)
