"""SASRec: item + position embedding, transformer, scores against the shared item table.

Every model in this package has the same small interface (`adarec.model.interface`).

Auxiliary parts (ELCRec's `IntentLearning`) are composed in: SASRec + intent learning *is*
ELCRec. Each part is called as ``part(encode, inputs, hidden)`` and returns a NamedTuple of
named, unweighted losses; `weigh` combines them with the recommendation loss.
"""

from __future__ import annotations

import torch
from torch import nn

from adarec.model.encoder import SequenceEmbedding, Transformer
from adarec.model.interface import Batch, SequenceModel, left_pad_ids
from adarec.model.losses import LossOutput, weigh

__all__ = ["Batch", "SASRec"]  # Batch: re-exported for older imports (it lives in interface)


class SASRec(SequenceModel):
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
    def full_width(self) -> bool:
        """Whether a part reads every position's output at full width (ELCRec's pooling)."""
        return any(getattr(part, "full_width", False) for part in self.aux.values())

    def loss(self, batch: Batch) -> LossOutput:
        if self.full_width:  # one full-width pass serves the rec loss and the parts
            width = self.embedding.positions.num_embeddings
            inputs, targets = (left_pad_ids(x, width) for x in (batch.inputs, batch.targets))
            encode, hidden = self.encode_full, self.encode_full(inputs)
        else:
            inputs, targets, encode = batch.inputs, batch.targets, self
            hidden = self(inputs)  # (B, L, D)
        losses = {"rec": self.rec_loss(hidden, targets, self.item_table, inputs)}
        for part in self.aux.values():
            losses.update(part(encode, inputs, hidden)._asdict())
        return weigh(losses, self.loss_weights)

    def before_training(self, train_inputs: torch.Tensor, seed: int) -> None:
        """Let each auxiliary part prepare itself (ELCRec: k-means on the centres)."""
        encode = self.encode_full if self.full_width else self
        observe = getattr(self.rec_loss, "observe", None)  # popularity-sampled losses
        if observe is not None:
            observe(train_inputs)
        with self.evaluating():
            for part in self.aux.values():
                part.initialise(encode, train_inputs, seed)
