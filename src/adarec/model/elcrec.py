"""ELCRec's intent learning as an auxiliary part of a model (docs/method.md#elcrec-intents).

`IntentLearning` owns the learnable intent centres and, per batch, makes two augmented views of
the inputs, encodes them together in ONE encoder pass (2B rows), and returns ELCRec's three
losses (unweighted; the model weighs them with the others):

* cluster:  clustering loss of the clean sequences' pooled representations and the centres;
* instance: the two views' per-position outputs fused with their nearest centre, flattened,
  in-batch InfoNCE;
* intent:   each view's pooled representation against the clean sequence's nearest centre.

Pooling (``pool``, docs/method.md#elcrec-pooling):

* ``"all"`` (ELCRec's): the clean sequence and the views are encoded at full width
  (``max_len``) with every position's output, padding included, as ELCRec computes it (the
  caller's ``encode`` is then a full-width encoder such as `SequenceModel.encode_full`);
  pooling averages all ``max_len`` positions and the instance loss flattens all of them.
* ``"real"``: real positions only (padding outputs zeroed / left out), so the losses do not
  depend on how much padding a batch carries and batches can be trimmed and length-grouped.
  With ELCRec's clustering weights this pooling collapses the users' representations
  (results/Beauty/NOTES.md).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from adarec.distributed import gather_rows
from adarec.model.augment import random_augment
from adarec.model.intents import IntentCentres, IntentLosses, intent_losses, mean_pool, self_dot

Encode = Callable[[Tensor], Tensor]  # (B, L) item ids -> (B, L, D)
POOLS = ("real", "all")


class IntentLearning(nn.Module):
    """ELCRec's learnable intents with instance and intent contrastive losses."""

    def __init__(
        self, *, centres: IntentCentres, fusion: str, temperature: float = 1.0,
        assign: str = "position", crop_ratio: float = 0.2, mask_ratio: float = 0.7,
        reorder_ratio: float = 0.2, gram: Callable[[Tensor], Tensor] = self_dot,
        pool: str = "real",
    ) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.pool = pool
        self.centres = centres
        self.fusion = fusion
        self.temperature = temperature
        self.assign = assign
        self.ratios = {"crop_ratio": crop_ratio, "mask_ratio": mask_ratio,
                       "reorder_ratio": reorder_ratio}
        self.gram = gram  # of the instance loss's fused views (`intent_losses`)

    @property
    def full_width(self) -> bool:
        """Whether the caller must encode at full width with padding outputs (``pool="all"``)."""
        return self.pool == "all"

    def _pool(self, out: Tensor, ids: Tensor) -> Tensor:
        return mean_pool(out, None if self.full_width else ids > 0)

    @torch.no_grad()
    def initialise(self, encode: Encode, inputs: Tensor, seed: int, batch_size: int = 1024):
        """k-means over the pooled representations of all ``inputs`` (N, L), once."""
        reps = [self._pool(encode(chunk), chunk) for chunk in inputs.split(batch_size)]
        self.centres.initialise(torch.cat(reps).float(), seed=seed)

    def forward(self, encode: Encode, inputs: Tensor, clean_out: Tensor) -> IntentLosses:
        """``inputs`` (B, L) and their encoder output ``clean_out`` (B, L, D); with
        ``pool="all"`` both at full width from a full-width ``encode``."""
        batch = inputs.shape[0]
        views = torch.cat([random_augment(inputs, **self.ratios),
                           random_augment(inputs, **self.ratios)])  # (2B, L)
        out = encode(views)
        if not self.full_width:  # padding outputs zeroed before fusion and flattening
            out = out * (views > 0).unsqueeze(-1)
        # Under torchrun the losses read every process's rows (in-batch negatives): the
        # global batch's losses, identical on every process (`gather_rows`).
        out1, out2 = gather_rows(out[:batch]), gather_rows(out[batch:])
        masks = ((None, None) if self.full_width else
                 (gather_rows(views[:batch] > 0), gather_rows(views[batch:] > 0)))
        return intent_losses(
            gather_rows(self._pool(clean_out, inputs)), (out1, out2), self.centres,
            fusion=self.fusion,
            temperature=self.temperature, view_masks=masks, assign=self.assign,
            gram=self.gram,
        )
