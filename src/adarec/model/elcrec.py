"""ELCRec's intent learning as an auxiliary part of a model (docs/method.md#elcrec-intents).

`IntentLearning` owns the learnable intent centres and, per batch, makes two augmented views of
the inputs, encodes them together in ONE encoder pass (2B rows), and returns ELCRec's three
losses (unweighted; the model weighs them with the others):

* cluster:  clustering loss of the clean sequences' pooled representations and the centres;
* instance: the two views' per-position outputs fused with their nearest centre, flattened,
  in-batch InfoNCE;
* intent:   each view's pooled representation against the clean sequence's nearest centre.

Choice (documented in docs/method.md): pooling and flattening use real positions only
(padding outputs are zeroed / left out). ELCRec averages over all 50 positions, padding
included; counting only real positions makes the losses independent of how much padding a
batch carries, so trimming all-padding columns changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from adarec.distributed import gather_rows
from adarec.model.augment import random_augment
from adarec.model.intents import IntentCentres, IntentLosses, intent_losses, mean_pool, self_dot

Encode = Callable[[Tensor], Tensor]  # (B, L) item ids -> (B, L, D)


class IntentLearning(nn.Module):
    """ELCRec's learnable intents with instance and intent contrastive losses."""

    def __init__(
        self, *, centres: IntentCentres, fusion: str, temperature: float = 1.0,
        assign: str = "position", crop_ratio: float = 0.2, mask_ratio: float = 0.7,
        reorder_ratio: float = 0.2, gram: Callable[[Tensor], Tensor] = self_dot,
    ) -> None:
        super().__init__()
        self.centres = centres
        self.fusion = fusion
        self.temperature = temperature
        self.assign = assign
        self.ratios = {"crop_ratio": crop_ratio, "mask_ratio": mask_ratio,
                       "reorder_ratio": reorder_ratio}
        self.gram = gram  # of the instance loss's fused views (`intent_losses`)

    @torch.no_grad()
    def initialise(self, encode: Encode, inputs: Tensor, seed: int, batch_size: int = 1024):
        """k-means over the pooled representations of all ``inputs`` (N, L), once."""
        reps = [
            mean_pool(encode(chunk), chunk > 0) for chunk in inputs.split(batch_size)
        ]
        self.centres.initialise(torch.cat(reps).float(), seed=seed)

    def forward(self, encode: Encode, inputs: Tensor, clean_out: Tensor) -> IntentLosses:
        """``inputs`` (B, L) and their encoder output ``clean_out`` (B, L, D)."""
        batch = inputs.shape[0]
        views = torch.cat([random_augment(inputs, **self.ratios),
                           random_augment(inputs, **self.ratios)])  # (2B, L)
        real = (views > 0).unsqueeze(-1)  # (2B, L, 1)
        out = encode(views) * real  # padding outputs zeroed before fusion and flattening
        # Under torchrun the losses read every process's rows (in-batch negatives): the
        # global batch's losses, identical on every process (`gather_rows`).
        out1, out2 = gather_rows(out[:batch]), gather_rows(out[batch:])
        masks = (gather_rows(views[:batch] > 0), gather_rows(views[batch:] > 0))
        return intent_losses(
            gather_rows(mean_pool(clean_out, inputs > 0)), (out1, out2), self.centres,
            fusion=self.fusion,
            temperature=self.temperature, view_masks=masks, assign=self.assign,
            gram=self.gram,
        )
