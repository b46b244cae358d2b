"""The original research release as a model (docs/release.md), built from the same parts.

The release trains two *independent* ELCRec/SASRec members that differ only in their
candidate depths ({4, 5} and {9, 10} on a 50-step linear schedule, depth d using step d - 1;
i.e. ``alpha_bars[d - 1]``). Each member has its own embeddings, encoder, intent centres,
optimiser and early stopping (`ReleaseEnsemble.stages`); the test score is the average
of the members' full score vectors. Diffusion is used in training only.

Per member and batch: a controller (GRU over the *detached* embedded input, padding
included, its last hidden state concatenated with an embedding of the raw, untruncated
length, linear, softmax over the two depths) mixes two noised copies of the embedded input
into one; the noised copies noise the clean branch's own (dropout-masked) embedding, and the
same encoder reads both. Losses (weights in `ReleaseMember.loss_weights`): BCE on the clean
branch and 0.5 x BCE on the noised one, with the same negatives (drawn by the data path);
1e-4 x the squared error of the noised output against the detached clean one, summed over D
per real position; 1e-4 x (-entropy of the mix); and ELCRec-style losses in the release's
form: instance InfoNCE between the two augmented views' noised-branch outputs, flattened,
without centre fusion; the clustering loss on the *detached* clean mean-pooled output (only
the centres learn from it); intent InfoNCE between the views' noised-branch pooled outputs
(a second pass of the views) and the clean sequence's nearest centre, same-intent pairs not
being negatives.

Two release defects are fixed and documented: the intent centres are initialised by k-means
(the release leaves them uninitialised), and the entry point runs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from adarec.distributed import gather_rows, global_mean
from adarec.model.augment import random_augment
from adarec.model.diffusion import roll_rows, run_gru
from adarec.model.encoder import SequenceEmbedding, Transformer, attention_mask
from adarec.model.grouping import LengthGrouping, grouped
from adarec.model.intents import IntentCentres, cluster_loss, info_nce, mean_pool, self_dot
from adarec.model.interface import Batch, Model, SequenceModel, Stage
from adarec.model.losses import LossOutput, weigh


def last_state_all_steps(gru: nn.GRU, e0: Tensor, visible: Tensor) -> Tensor:
    """The release's controller input: the GRU over every column of the left-padded rows
    ``e0`` (R, L, D), padding first; its state after the last column (R, D). ``visible``
    is unused (the signature is `last_state_real_steps`')."""
    return run_gru(gru, e0)[:, -1]


def last_state_real_steps(gru: nn.GRU, e0: Tensor, visible: Tensor) -> Tensor:
    """The GRU over each row's last ``visible`` (R,) columns only (its real items), packed
    on the CPU; its state after the last real item (R, D). Not the release's (it reads the
    padding too), but far cheaper on the CPU for short rows (docs/release.md)."""
    out = run_gru(gru, roll_rows(e0, e0.shape[1] - visible), visible)
    return out[torch.arange(out.shape[0], device=out.device), (visible - 1).clamp(min=0)]


LastState = Callable[[nn.GRU, Tensor, Tensor], Tensor]


def consistency_loss(noisy: Tensor, clean: Tensor, real: Tensor) -> Tensor:
    """Squared error of (B, L, D) outputs summed over positions and D, per real position
    (``real`` (B, L) bool): the release's ``mse_loss(..., reduction="sum") / mask.sum()``
    with a (B, L, 1) mask, i.e. a sum over D, not a mean."""
    return ((noisy - clean).pow(2).sum(-1) * real).sum() / real.sum().clamp(min=1)


class ReleaseController(nn.Module):
    """Softmax mixing weights (R, n_choices) over the candidate depths, from the detached
    embedded rows and an embedding of each row's length (clipped to ``max_length``; the
    release's table has 513 rows, whatever ``max_len``). ``last_state`` says which columns
    the GRU reads (`last_state_all_steps`, the release's, or `last_state_real_steps`);
    ``reads_padding`` tells the caller whether it needs the rows at their full width."""

    def __init__(self, *, dim: int, n_choices: int = 2, max_length: int = 512,
                 last_state: LastState = last_state_all_steps) -> None:
        super().__init__()
        self.gru = nn.GRU(dim, dim, batch_first=True)
        self.length_embedding = nn.Embedding(max_length + 1, dim)
        self.head = nn.Linear(2 * dim, n_choices)
        self.last_state = last_state
        self.reads_padding = last_state is last_state_all_steps

    def reset_to_torch_defaults(self) -> None:
        """PyTorch's own initialisation for the length embedding (N(0, 1)) and the head
        (uniform within 1/sqrt(2D), bias too): the release builds its controller after
        applying its N(0, 0.02) initialisation to the model, so these keep their defaults
        (docs/release.md). The GRU keeps PyTorch's in both codes."""
        self.length_embedding.reset_parameters()
        self.head.reset_parameters()

    def forward(self, e0: Tensor, visible: Tensor, lengths: Tensor) -> Tensor:
        """``e0`` (R, L, D) left-padded embedded rows (``max_len`` wide if the GRU reads the
        padding), ``visible`` (R,) their real columns, ``lengths`` (R,) the lengths to embed
        -> (R, n_choices)."""
        last = self.last_state(self.gru, e0.detach(), visible)  # (R, D)
        n = lengths.clamp(max=self.length_embedding.num_embeddings - 1)
        return self.head(torch.cat([last, self.length_embedding(n)], dim=-1)).softmax(-1)


class ReleaseMember(SequenceModel):
    """One of the release's two models: SASRec + noised branch + ELCRec-style losses.

    A training step embeds the inputs and the augmented views once, each row with its own
    dropout mask; the clean branch reads the inputs' embedding, and the noised branch noises
    that same embedding (as the release does); each view is noised likewise. The views run
    ``view_passes`` times, each with its own dropout and noise: the release runs them once
    for the instance loss and again for the intent loss (2); 1 shares one pass (faster).

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
        view_passes: int = 2, grouping: LengthGrouping | None = None,
        gram: Callable[[Tensor], Tensor] = self_dot,
    ) -> None:
        super().__init__()
        if view_passes not in (1, 2):
            raise ValueError(f"view_passes must be 1 or 2, got {view_passes}")
        self.embedding = embedding
        self.transformer = transformer
        self.controller = controller
        self.centres = centres
        self.register_buffer("alpha_bars", alpha_bars, persistent=False)  # (n_depths,)
        self.rec_loss = rec_loss
        self.loss_weights = loss_weights
        self.temperature = temperature
        self.view_passes = view_passes
        self.grouping = grouping  # of the passes (`passes`)
        self.gram = gram  # of the instance loss's flattened views (zero at padding)

    def passes(self, input_ids: Tensor, n_clean: int,
               lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Every encoder pass of a training step as one. ``input_ids`` (R, L): the first
        ``n_clean`` rows run the clean branch; the next ``n_clean`` are the same inputs
        again, for the noised branch, which noises the clean rows' own embedding (one
        dropout mask, as in the release); the other rows (views) are noised alone.
        ``lengths`` (R,): what the controller embeds per row (default: the real items).
        Returns the outputs (R, L, D) and the mixing weights (R, n_depths), zero for the
        clean rows.

        One embedding, one controller and one encoder call for all rows, instead of one per
        branch: fewer, larger operations (a GPU launches each one; see docs/benchmarks.md).
        On the CPU the rows run in length groups, as `LengthGrouping.map` says (a row and
        its noised twin have the same width, so they share a group).
        """
        lengths = (input_ids > 0).sum(1) if lengths is None else lengths
        grouping = grouped(self.grouping, input_ids)
        if grouping is None:
            return self._passes(input_ids, n_clean, lengths)

        def group(ids: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
            # Rows keep the input's order in a group: its clean rows, then their twins.
            return self._passes(ids, int((rows < n_clean).sum()), lengths[rows])

        out, w = grouping.map(group, input_ids, (True, False), with_rows=True)
        return out, w

    def _passes(self, input_ids: Tensor, n_clean: int, lengths: Tensor) -> tuple[Tensor, Tensor]:
        n = n_clean
        # The clean rows and the views; the twins (rows n..2n) reuse the clean rows.
        rows = torch.arange(len(input_ids), device=input_ids.device)
        keep = torch.cat([rows[:n], rows[2 * n :]])
        ids = input_ids.index_select(0, keep)
        e0 = self.embedding(ids)  # (R - n, L, D)
        w = self.controller(self._gru_input(e0), (ids > 0).sum(1), lengths.index_select(0, keep))
        ab = self.alpha_bars[:, None, None, None]  # (n_depths, 1, 1, 1)
        eps = self.noise((len(ab), *e0.shape), e0)
        noisy = ab.sqrt() * e0 + (1 - ab).sqrt() * eps  # (n_depths, R - n, L, D)
        mixed = (w.T[:, :, None, None] * noisy).sum(0)  # noised inputs, then noised views
        # Splits, not slices: a slice's gradient is a zero-filled tensor of the whole.
        e_clean = e0.split([n, len(e0) - n])[0]
        out = self.transformer(torch.cat([e_clean, mixed]), attention_mask(input_ids))
        return out, torch.cat([w.new_zeros(n, w.shape[1]), w])

    def _gru_input(self, e0: Tensor) -> Tensor:
        """What the controller's GRU reads: ``e0`` (R, w, D) itself, or, if it reads the
        padding, ``e0`` after the embeddings of the columns cut off its left, up to
        ``max_len``: padding, dropout-masked as the release's are (its input is always
        ``max_len`` wide). Detached: the controller reads its input without gradient."""
        emb = self.embedding
        k = emb.positions.num_embeddings - e0.shape[1]
        if not self.controller.reads_padding or k <= 0:
            return e0.detach()
        with torch.no_grad():
            pad = emb.ln(emb.items.weight[0] + emb.positions.weight[:k])  # (k, D)
            return torch.cat([emb.drop(pad.expand(len(e0), k, -1)), e0.detach()], dim=1)

    @staticmethod
    def noise(shape: tuple[int, ...], like: Tensor) -> Tensor:
        """Standard normal noise for the noised branch (tests may replace it)."""
        return torch.randn(shape, device=like.device, dtype=like.dtype)

    def loss(self, batch: Batch) -> LossOutput:
        inputs = batch.inputs
        b = inputs.shape[0]
        views = torch.cat([random_augment(inputs), random_augment(inputs)])  # (2B, L)
        all_views = views.repeat(self.view_passes, 1)  # the same views, run once per pass
        lengths = (inputs > 0).sum(1) if batch.lengths is None else batch.lengths
        # Rows: clean branch, noised branch, then each pass's two noised views.
        out, w = self.passes(torch.cat([inputs, inputs, all_views]), n_clean=b,
                             lengths=torch.cat([lengths, lengths, (all_views > 0).sum(1)]))
        clean, noisy, *passes = out.split([b, b] + [2 * b] * self.view_passes)
        w = w[b : 2 * b]  # the inputs' mix
        real, view_real = inputs > 0, views > 0
        flat = passes[0] * view_real.unsqueeze(-1)  # (2B, L, D), zero at padding
        pooled = mean_pool(passes[-1], view_real)  # (2B, D)
        clean_pooled = mean_pool(clean, real)
        index, intent = self.centres.nearest(clean_pooled.detach())
        # Under torchrun (`adarec.distributed`): means as shares of the global batch's, and
        # the in-batch losses over every process's rows (`gather_rows`; alone: identities).
        index, intent, g = gather_rows(index), gather_rows(intent), gather_rows
        losses = {
            "rec": self.rec_loss(clean, batch.targets, self.item_table, inputs,
                                 batch.negatives),
            "rec_noised": self.rec_loss(noisy, batch.targets, self.item_table, inputs,
                                        batch.negatives),
            "consistency": global_mean(consistency_loss(noisy, clean.detach(), real),
                                       real.sum()),
            "expl": global_mean((w * w.clamp(min=1e-12).log()).sum(-1).mean(), b),  # -H
            "instance": info_nce(*(g(x) for x in flat.split(b)), self.temperature,
                                 gram=self.gram),
            "cluster": cluster_loss(g(clean_pooled.detach()), self.centres.centres),
            # Same-intent pairs are not negatives (the release's PCLoss with intent_ids).
            "intent": sum(info_nce(g(p), intent, self.temperature, groups=index)
                          for p in pooled.split(b)) / 2,
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
