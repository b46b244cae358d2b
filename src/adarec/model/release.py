"""The original research release as a model (docs/release.md), built from the same parts.

The release trains two *independent* ELCRec/SASRec members that differ only in their
candidate depths ({4, 5} and {9, 10} on a 50-step linear schedule, depth d using step d - 1;
i.e. ``alpha_bars[d - 1]``). Each member has its own embeddings, encoder, intent centres,
optimiser and early stopping (`ReleaseEnsemble.stages`); the test score is the average
of the members' full score vectors. Diffusion is used in training only.

Per member and batch: a controller (GRU over the *detached* embedded input, last hidden state,
concatenated with an embedding of the raw length, linear, softmax over the two depths) mixes
two noised copies of the embedded input into one; the same encoder reads the clean and the
noised input. Losses (weights in `ReleaseMember.loss_weights`): BCE on the clean branch,
0.5 x BCE on the noised branch, 1e-4 x masked MSE(noised output, detached clean output),
1e-4 x (-entropy of the mix), and ELCRec-style losses in the release's form: instance InfoNCE
between the two augmented views' noised-branch outputs, flattened, without centre fusion; the
clustering loss on the *detached* clean mean-pooled output (only the centres learn from it);
intent InfoNCE between the views' noised-branch pooled outputs and the clean sequence's
nearest centre.

Two release defects are fixed and documented: the intent centres are initialised by k-means
(the release leaves them uninitialised), and the entry point runs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from adarec.model.augment import random_augment
from adarec.model.diffusion import roll_rows, run_gru
from adarec.model.encoder import SequenceEmbedding, Transformer, attention_mask
from adarec.model.grouping import LengthGrouping, grouped
from adarec.model.intents import IntentCentres, cluster_loss, info_nce, mean_pool, self_dot
from adarec.model.interface import Batch, Model, SequenceModel, Stage
from adarec.model.losses import LossOutput, weigh


class ReleaseController(nn.Module):
    """Softmax mixing weights (B, 2) over two candidate depths, from the detached input."""

    def __init__(self, *, dim: int, max_len: int, n_choices: int = 2) -> None:
        super().__init__()
        self.gru = nn.GRU(dim, dim, batch_first=True)
        self.length_embedding = nn.Embedding(max_len + 1, dim)
        self.head = nn.Linear(2 * dim, n_choices)

    def forward(self, e0: Tensor, input_ids: Tensor) -> Tensor:
        lengths = (input_ids > 0).sum(1)
        # The GRU's last hidden state after the last real item (padding trails after rolling).
        out = run_gru(self.gru, roll_rows(e0.detach(), input_ids.shape[1] - lengths),
                      lengths)
        last = out[torch.arange(out.shape[0], device=out.device), (lengths - 1).clamp(min=0)]
        h = torch.cat([last, self.length_embedding(lengths)], dim=-1)
        return self.head(h).softmax(-1)


class ReleaseMember(SequenceModel):
    """One of the release's two models: SASRec + noised branch + ELCRec-style losses.

    With a ``grouping``, the passes run their rows on the CPU in groups of similar length,
    each cut to its own width (see `adarec.model.grouping`): the same outputs at real
    positions, for a fraction of the work on short-sequence data. On a GPU the batch runs
    whole. ``gram`` computes the instance loss's Gram matrix (`LengthGrouping.gram` skips
    padding on the CPU).
    """

    def __init__(
        self, *, embedding: SequenceEmbedding, transformer: Transformer,
        controller: ReleaseController, centres: IntentCentres, alpha_bars: Tensor,
        rec_loss: nn.Module, loss_weights: dict[str, float], temperature: float = 1.0,
        grouping: LengthGrouping | None = None, gram: Callable[[Tensor], Tensor] = self_dot,
    ) -> None:
        super().__init__()
        self.embedding = embedding
        self.transformer = transformer
        self.controller = controller
        self.centres = centres
        self.register_buffer("alpha_bars", alpha_bars, persistent=False)  # (2,)
        self.rec_loss = rec_loss
        self.loss_weights = loss_weights
        self.temperature = temperature
        self.grouping = grouping  # of the passes (`passes`)
        self.gram = gram  # of the instance loss's flattened views (zero at padding)

    def passes(self, input_ids: Tensor, n_clean: int) -> tuple[Tensor, Tensor]:
        """Every encoder pass of a training step as one: the first ``n_clean`` rows of
        ``input_ids`` (R, L) run the clean branch, the others the noised one (embedding mixed
        by the controller's weights). Returns the outputs (R, L, D) and the mixing weights
        (R, n_depths), zero for the clean rows.

        One embedding, one controller and one encoder call for all rows, instead of one per
        branch: fewer, larger operations (a GPU launches each one; see docs/benchmarks.md).
        On the CPU the rows run in length groups, as `LengthGrouping.map` says.
        """
        grouping = grouped(self.grouping, input_ids)
        if grouping is None:
            return self._passes(input_ids, n_clean)

        def group(ids: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
            # Rows keep the input's order in a group, so its clean rows lead it.
            return self._passes(ids, int((rows < n_clean).sum()))

        out, w = grouping.map(group, input_ids, (True, False), with_rows=True)
        return out, w

    def _passes(self, input_ids: Tensor, n_clean: int) -> tuple[Tensor, Tensor]:
        e0 = self.embedding(input_ids)  # (R, L, D)
        # Splits, not slices: a slice's gradient is a zero-filled tensor of the whole.
        e_clean, e_noised = e0.split([n_clean, len(e0) - n_clean])
        w = self.controller(e_noised, input_ids[n_clean:])  # (R - n_clean, n_depths)
        ab = self.alpha_bars[:, None, None, None]  # (n_depths, 1, 1, 1)
        eps = self.noise((len(ab), *e_noised.shape), e0)
        noisy = ab.sqrt() * e_noised + (1 - ab).sqrt() * eps  # (n_depths, R - n_clean, L, D)
        mixed = (w.T[:, :, None, None] * noisy).sum(0)
        out = self.transformer(torch.cat([e_clean, mixed]), attention_mask(input_ids))
        return out, torch.cat([w.new_zeros(n_clean, w.shape[1]), w])

    @staticmethod
    def noise(shape: tuple[int, ...], like: Tensor) -> Tensor:
        """Standard normal noise for the noised branch (tests may replace it)."""
        return torch.randn(shape, device=like.device, dtype=like.dtype)

    def loss(self, batch: Batch) -> LossOutput:
        inputs = batch.inputs
        b = inputs.shape[0]
        views = torch.cat([random_augment(inputs), random_augment(inputs)])
        # Rows: clean branch, noised branch, the two noised views.
        out, w = self.passes(torch.cat([inputs, inputs, views]), n_clean=b)
        clean, noisy, view_out = out.split([b, b, 2 * b])
        w = w.split([b, b, 2 * b])[1]
        real, view_real = inputs > 0, views > 0
        flat = view_out * view_real.unsqueeze(-1)  # (2B, L, D), zero at padding
        pooled = mean_pool(view_out, view_real)
        clean_pooled = mean_pool(clean, real)
        _, intent = self.centres.nearest(clean_pooled.detach())
        sq = (noisy - clean.detach()).pow(2).mean(-1)  # (B, L)
        losses = {
            "rec": self.rec_loss(clean, batch.targets, self.item_table, inputs),
            "rec_noised": self.rec_loss(noisy, batch.targets, self.item_table, inputs),
            "consistency": (sq * real).sum() / real.sum().clamp(min=1),
            "expl": (w * w.clamp(min=1e-12).log()).sum(-1).mean(),  # -H
            "instance": info_nce(*flat.split(b), self.temperature, gram=self.gram),
            "cluster": cluster_loss(clean_pooled.detach(), self.centres.centres),
            "intent": sum(info_nce(p, intent, self.temperature) for p in pooled.split(b)) / 2,
        }
        return weigh(losses, self.loss_weights)

    @torch.no_grad()
    def before_training(self, train_inputs: Tensor, seed: int) -> None:
        """k-means initialisation of the centres (the release leaves them uninitialised)."""
        with self.evaluating():
            reps = [mean_pool(self(c), c > 0) for c in train_inputs.split(1024)]
        self.centres.initialise(torch.cat(reps).float(), seed=seed)


class ReleaseEnsemble(Model):
    """The release's test-time model: the average of its members' full score vectors."""

    def __init__(self, members: list[ReleaseMember]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def stages(self) -> list[Stage]:
        """Each member trains on its own, one after the other (as the release does)."""
        if len(self.members) == 1:
            return [Stage("", self.members[0])]
        return [Stage(f"/member{i}", m) for i, m in enumerate(self.members)]

    @property
    def item_table(self) -> Tensor:
        """(M, C, D) the members' item tables, one per member (each scores its own)."""
        return torch.stack([m.item_table for m in self.members])

    def forward(self, input_ids: Tensor, last_only: bool = False) -> Tensor:
        """The members' representations side by side, (B, L, M * D): the user vector whose
        product with the members' item tables laid end to end, over M, is `score`."""
        return torch.cat([m(input_ids, last_only=last_only) for m in self.members], -1)

    def score(self, input_ids: Tensor) -> Tensor:
        return torch.stack([m.score(input_ids) for m in self.members]).mean(0)

    def loss(self, batch: Batch) -> LossOutput:
        """The sum of the members' losses, parts named ``member<i>/<part>``. Not what `fit`
        trains (each member trains on its own, see `stages`); for one joint step."""
        outs = [m.loss(batch) for m in self.members]
        parts = {f"member{i}/{k}": v for i, o in enumerate(outs) for k, v in o.parts.items()}
        stats = {f"member{i}/{k}": v for i, o in enumerate(outs) for k, v in o.stats.items()}
        return LossOutput(sum(o.total for o in outs), parts, stats)

    def before_training(self, train_inputs: Tensor, seed: int) -> None:
        for m in self.members:
            m.before_training(train_inputs, seed)
