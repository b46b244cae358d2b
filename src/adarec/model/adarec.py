"""ADARec as the paper states it (DESIGN.md section 4): depth controller -> hierarchical
diffusion -> two experts over every level -> router-weighted aggregates -> gate -> scores.

Parts arrive built (see `adarec.model.build`); each ablation of the paper's Table 4 swaps or
removes a part, it never branches here:

* without ADC: a `FixedDepth` controller;
* without HDA: a `HierarchicalDiffusion` with no denoiser (levels are copies of E0);
* one expert (ADC + HDA only): ``coarse`` is the same module as ``fine`` with a
  `ConstantRouter`, so the fused output is the mean over the used levels;
* without router: a `ConstantRouter`;
* without L_cont: its weight is 0.

Inference is deterministic: the controller takes its argmax depth and the diffusion uses
zero noise (or a fixed seed), so two evaluations of the same weights are identical.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from adarec.model.diffusion import HierarchicalDiffusion, level_mask
from adarec.model.encoder import SequenceEmbedding, Transformer, attention_mask
from adarec.model.experts import Gate, aggregate, trajectory_contrast
from adarec.model.intents import mean_pool
from adarec.model.losses import LossOutput, weigh
from adarec.model.sasrec import Batch


class Trajectory(NamedTuple):
    """One forward pass: fused ``h`` (B, L, D) and what the losses and logs need."""

    h: Tensor
    coarse: Tensor  # (T+1, B, L, D) coarse expert output per level
    onehot: Tensor  # (B, L, T+1) chosen depth at every position
    router: Tensor  # (T+1, B, L) fine-side weights g_k
    expl: Tensor
    deno: Tensor


class ADARec(nn.Module):
    def __init__(
        self, *, embedding: SequenceEmbedding, controller: nn.Module,
        diffusion: HierarchicalDiffusion, fine: Transformer, coarse: Transformer,
        router: nn.Module, gate: Gate, rec_loss: nn.Module, intents: nn.Module | None,
        cont_temperature: float, loss_weights: dict[str, float],
    ) -> None:
        super().__init__()
        self.embedding = embedding
        self.controller = controller
        self.diffusion = diffusion
        self.fine = fine
        self.coarse = coarse  # may be `fine` itself (one-expert ablation)
        self.router = router
        self.gate = gate
        self.rec_loss = rec_loss
        self.aux = nn.ModuleDict({"intents": intents} if intents is not None else {})
        self.cont_temperature = cont_temperature
        self.loss_weights = {"rec": 1.0, **loss_weights}

    @property
    def item_table(self) -> Tensor:
        return self.embedding.items.weight

    def trajectory(self, input_ids: Tensor) -> Trajectory:
        real = input_ids > 0  # (B, L)
        attn = attention_mask(input_ids)  # (B, 1, L, L)
        e0 = self.embedding(input_ids)  # (B, L, D)
        depth = self.controller(e0, input_ids)
        mask = level_mask(depth.onehot)  # (B, L, T+1)
        levels, deno = self.diffusion(e0, mask, real)  # (T+1, B, L, D)
        n_levels, batch = levels.shape[:2]
        flat = levels.reshape(n_levels * batch, *levels.shape[2:])
        attn_all = attn.repeat(n_levels, 1, 1, 1)
        fine = self.fine(flat, attn_all).view_as(levels)
        coarse = fine if self.coarse is self.fine else self.coarse(flat, attn_all)
        coarse = coarse.view_as(levels)
        g = self.router(levels, real)  # (T+1, B, L)
        used = mask.permute(2, 0, 1)  # (T+1, B, L)
        h = self.gate(aggregate(fine, used * g), aggregate(coarse, used * (1 - g)))
        return Trajectory(h, coarse, depth.onehot, g, depth.expl, deno)

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.trajectory(input_ids).h

    def encode_coarse(self, input_ids: Tensor) -> Tensor:
        """The coarse expert on the clean embedding: the encoder of the intent learning."""
        return self.coarse(self.embedding(input_ids), attention_mask(input_ids))

    def loss(self, batch: Batch) -> LossOutput:
        tr = self.trajectory(batch.inputs)
        real = batch.inputs > 0
        n_levels = tr.coarse.shape[0]
        pooled = mean_pool(tr.coarse.flatten(0, 1), real.repeat(n_levels, 1))
        user_depth = tr.onehot[:, -1].detach()  # (B, T+1): the whole-sequence decision
        depth = user_depth.argmax(-1)  # (B,)
        losses = {
            "rec": self.rec_loss(tr.h, batch.targets, self.item_table, batch.inputs),
            "deno": tr.deno,
            "cont": trajectory_contrast(pooled.view(n_levels, real.shape[0], -1), depth,
                                        self.cont_temperature),
            "expl": tr.expl,
        }
        for part in self.aux.values():
            losses.update(part(self.encode_coarse, batch.inputs, tr.coarse[0])._asdict())
        used = level_mask(user_depth).T  # (T+1, B)
        router = tr.router[:, :, -1].detach()  # (T+1, B)
        stats = {
            **{f"depth_{k}": v for k, v in enumerate(user_depth.mean(0))},
            **{f"router_{k}": v for k, v in
               enumerate((router * used).sum(1) / used.sum(1).clamp(min=1))},
        }
        return weigh(losses, self.loss_weights, stats)

    def score(self, input_ids: Tensor) -> Tensor:
        return self(input_ids)[:, -1] @ self.item_table.T  # (B, C)

    def before_training(self, train_inputs: Tensor, seed: int) -> None:
        """k-means for the coarse side's intent centres, if any."""
        was_training = self.training
        self.eval()
        for part in self.aux.values():
            part.initialise(self.encode_coarse, train_inputs, seed)
        self.train(was_training)
