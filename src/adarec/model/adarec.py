"""ADARec as the paper states it (docs/method.md#adarec): depth controller -> hierarchical
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

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adarec.distributed import gather_rows, global_mean
from adarec.model.diffusion import Depth, HierarchicalDiffusion, Levels, level_mask
from adarec.model.encoder import SequenceEmbedding, Transformer, attention_mask
from adarec.model.experts import Gate, route, trajectory_contrast
from adarec.model.grouping import LengthGrouping, grouped
from adarec.model.intents import mean_pool
from adarec.model.interface import Batch, SequenceModel, full_width_pass, left_pad_ids
from adarec.model.losses import LossOutput, weigh
from adarec.model.probes import depth_stats, history_lengths, level_stats, router_stats


class Trajectory(NamedTuple):
    """One forward pass: the fused ``h`` (B, L, D) and what the losses and logs need."""

    h: Tensor
    coarse0: Tensor  # (B, L, D) coarse expert output on the clean level (intent learning)
    pooled: Tensor  # (T+1, B, D) coarse expert output per level, mean over real positions
    depth: Tensor  # (B, T+1) one-hot depth chosen at the last position
    router: Tensor  # (T+1, B) fine-side weights g_k at the last position
    # Means over positions, by name: expl, deno (losses), deno_zero and dist (T,) (logs),
    # and how many positions each averages over (to merge groups of rows).
    means: dict[str, Tensor]
    counts: dict[str, Tensor]


class Fused(NamedTuple):
    """`ADARec._fused`'s outputs: ``h`` (B, L, D) fused, ``coarse`` (T+1, B, L, D) the coarse
    expert's outputs, ``router`` (T+1, B, L) the router's logits, the depth decision and the
    levels. With ``last_only``, L = 1 (the last position) for all but the last two."""

    h: Tensor
    coarse: Tensor
    router: Tensor
    depth: Depth
    levels: Levels


def merge_groups(parts: list[Trajectory], inverse: Tensor, length: int) -> Trajectory:
    """The `Trajectory` of a whole batch from those of its length groups (see `ADARec`):
    rows back in the batch's order, positions widened to ``length`` with zeros on the left,
    the means weighted by their counts."""

    def rows(values: list[Tensor], dim: int) -> Tensor:
        return torch.cat(values, dim).index_select(dim, inverse)

    def widened(name: str) -> Tensor:
        return rows([F.pad(x, (0, 0, length - x.shape[1], 0))
                     for x in (getattr(p, name) for p in parts)], 0)

    counts = {name: sum(p.counts[name] for p in parts) for name in parts[0].counts}
    means = {name: sum(p.means[name] * p.counts[name] for p in parts) / n.clamp(min=1)
             for name, n in counts.items()}
    return Trajectory(
        widened("h"), widened("coarse0"), rows([p.pooled for p in parts], 1),
        rows([p.depth for p in parts], 0), rows([p.router for p in parts], 1),
        means, counts,
    )


class ADARec(SequenceModel):
    """See the module docstring. With a ``grouping``, the whole trajectory runs its rows on the CPU
    in groups of similar length (`adarec.model.grouping`), each cut to its own width (every part
    of it but the batch-wide contrastive loss reads one row at a time), which saves most of the
    work of the levels on short-sequence data; the outputs at real positions are the same. On a
    GPU that would cost a sync per step, so the batch runs whole."""

    def __init__(
        self, *, embedding: SequenceEmbedding, controller: nn.Module,
        diffusion: HierarchicalDiffusion, fine: Transformer, coarse: Transformer,
        router: nn.Module, gate: Gate, rec_loss: nn.Module, intents: nn.Module | None,
        cont_temperature: float, loss_weights: dict[str, float],
        grouping: LengthGrouping | None = None,
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
        self.grouping = grouping

    def trajectory(self, input_ids: Tensor) -> Trajectory:
        grouping = grouped(self.grouping, input_ids)
        if grouping is None:
            return self._trajectory(input_ids)
        length = input_ids.shape[1]
        groups, inverse = grouping.groups(input_ids > 0)
        parts = [self._trajectory(input_ids[rows, length - w :]) for rows, w in groups]
        return merge_groups(parts, inverse, length)

    def _fused(self, input_ids: Tensor, last_only: bool) -> Fused:
        real = input_ids > 0  # (B, L)
        attn = attention_mask(input_ids)  # (B, 1, L, L)
        e0 = self.embedding(input_ids)  # (B, L, D)
        depth = self.controller(e0, input_ids)
        mask = level_mask(depth.onehot)  # (B, L, T+1)
        diffused = self.diffusion(e0, mask, real)
        levels = diffused.levels  # (T+1, B, L, D)
        n_levels, batch = levels.shape[:2]
        flat = levels.reshape(n_levels * batch, *levels.shape[2:])
        attn_all = attn.repeat(n_levels, 1, 1, 1)
        fine = self.fine(flat, attn_all, last_only=last_only)
        coarse = (fine if self.coarse is self.fine
                  else self.coarse(flat, attn_all, last_only=last_only))
        fine, coarse = (x.view(n_levels, batch, -1, x.shape[-1]) for x in (fine, coarse))
        logits = self.router(levels, real, last_only=last_only)  # (T+1, B, L), fp32
        used = mask.permute(2, 0, 1)[..., -logits.shape[-1] :]  # (T+1, B, L)
        h = route(fine, coarse, logits, used, self.gate)
        return Fused(h, coarse, logits, depth, diffused)

    def _trajectory(self, input_ids: Tensor) -> Trajectory:
        f = self._fused(input_ids, last_only=False)
        n_levels, batch = f.coarse.shape[:2]
        pooled = mean_pool(f.coarse.flatten(0, 1), (input_ids > 0).repeat(n_levels, 1))
        lv = f.levels
        means = {"expl": f.depth.expl, "deno": lv.deno, "deno_zero": lv.deno_zero,
                 "dist": lv.dist}
        counts = {"expl": f.depth.count, "deno": lv.count, "deno_zero": lv.count,
                  "dist": lv.n_real}
        return Trajectory(
            f.h, f.coarse[0], pooled.view(n_levels, batch, -1),
            f.depth.onehot[:, -1].detach(), torch.sigmoid(f.router[:, :, -1].detach()),
            means, {name: n.float() for name, n in counts.items()},
        )

    def forward(self, input_ids: Tensor, last_only: bool = False) -> Tensor:
        """(B, L, D) fused representations; with ``last_only`` (B, 1, D), the last position's
        alone, which is all that scoring reads, for less work (see `Transformer`)."""
        if not last_only:
            return self.trajectory(input_ids).h
        grouping = grouped(self.grouping, input_ids)
        if grouping is None:
            return self._fused(input_ids, last_only=True).h
        (h,) = grouping.map(lambda ids: (self._fused(ids, last_only=True).h,), input_ids,
                            (False,))
        return h

    def encode_coarse(self, input_ids: Tensor) -> Tensor:
        """The coarse expert on the clean embedding: the encoder of the intent learning."""
        return self.coarse(self.embedding(input_ids), attention_mask(input_ids))

    def encode_coarse_full(self, input_ids: Tensor) -> Tensor:
        """`encode_coarse` at full width with padding outputs (ELCRec's pooling, see
        `SequenceModel.encode_full`)."""
        return full_width_pass(self.coarse, self.embedding, input_ids)

    def _intent_losses(self, part: nn.Module, inputs: Tensor, coarse0: Tensor) -> dict:
        if not part.full_width:
            return part(self.encode_coarse, inputs, coarse0)._asdict()
        ids = left_pad_ids(inputs, self.embedding.positions.num_embeddings)
        return part(self.encode_coarse_full, ids, self.encode_coarse_full(ids))._asdict()

    def losses(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The named, unweighted losses (with their graphs) and the detached logs
        (`adarec.model.probes`); `loss` weighs them."""
        tr = self.trajectory(batch.inputs)
        depth = tr.depth.argmax(-1)  # (B,) the whole-sequence decision
        # Under torchrun: means as shares of the global batch's, and the contrast over
        # every process's users (`adarec.distributed`); alone, the plain values.
        losses = {
            "rec": self.rec_loss(tr.h, batch.targets, self.item_table, batch.inputs),
            "deno": global_mean(tr.means["deno"], tr.counts["deno"]),
            "cont": trajectory_contrast(gather_rows(tr.pooled, dim=1), gather_rows(depth),
                                        self.cont_temperature),
            "expl": global_mean(tr.means["expl"], tr.counts["expl"]),
        }
        for part in self.aux.values():
            losses.update(self._intent_losses(part, batch.inputs, tr.coarse0))
        stats = {
            **depth_stats(tr.depth, history_lengths(batch.inputs)),
            **router_stats(tr.router, level_mask(tr.depth).T),
            "deno_zero": tr.means["deno_zero"].detach(),
            **level_stats(self.diffusion.noise_std, tr.means["dist"].detach()),
        }
        return losses, stats

    def loss(self, batch: Batch) -> LossOutput:
        losses, stats = self.losses(batch)
        return weigh(losses, self.loss_weights, stats)

    def before_training(self, train_inputs: Tensor, seed: int) -> None:
        """k-means for the coarse side's intent centres, if any; item counts for a
        popularity-sampled loss."""
        observe = getattr(self.rec_loss, "observe", None)
        if observe is not None:
            observe(train_inputs)
        with self.evaluating():
            for part in self.aux.values():
                encode = self.encode_coarse_full if part.full_width else self.encode_coarse
                part.initialise(encode, train_inputs, seed)
