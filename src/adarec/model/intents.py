"""ELCRec's learnable intent centres and its three auxiliary losses (docs/method.md#elcrec-intents).

Source checked: yueliu1999/ELCRec ``src/trainers.py`` (``ELCRecTrainer``, contrast_type
"Hybrid"), ``src/modules.py`` (``NCELoss``, ``PCLoss``), ``src/models.py`` (``KMeans``); the
losses are the same as salesforce/ICLRec's ``NCELoss`` / ``PCLoss``.

Centres are used L2-normalised everywhere. ELCRec keeps its centre parameter on the unit sphere
by overwriting ``cluster_centers.data`` with its normalised value every step (outside autograd)
and uses the raw parameter; here the normalisation is part of the graph instead (same forward
values, the gradient is projected onto the sphere), so no loss mutates a parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adarec.distributed import broadcast_module, gather_rows, is_main
from adarec.errors import AdarecError

Fusion = Literal["add", "concat"]
Assign = Literal["position", "sequence"]


def mean_pool(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """(B, L, D) -> (B, D) mean over positions.

    ``mask=None`` averages over all L positions, padding included: that is ELCRec's
    ``seq_representation_type="mean"`` (``torch.mean(sequence_output, dim=1)``), the faithful
    choice. With ``mask`` (B, L) (bool or 0/1, True = real item) only real positions count;
    a row without any real position gives zeros.
    """
    if mask is None:
        return x.mean(dim=1)
    weights = mask.to(x.dtype).unsqueeze(-1)  # (B, L, 1)
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def _sq_dist(x: Tensor, y: Tensor) -> Tensor:
    """(N, D), (M, D) -> (N, M) squared L2 distances (expanded form, as ELCRec computes it)."""
    return (x * x).sum(-1)[:, None] + (y * y).sum(-1)[None, :] - 2.0 * x @ y.T


def self_dot(z: Tensor) -> Tensor:
    """(N, ...) -> (N, N) dot products of the flattened rows (the dense Gram matrix)."""
    flat = z.flatten(1)
    return flat @ flat.T


def info_nce(
    a: Tensor, b: Tensor, temperature: float = 1.0,
    gram: Callable[[Tensor], Tensor] = self_dot, groups: Tensor | None = None,
) -> Tensor:
    """In-batch InfoNCE between rows of ``a`` (B, D) and ``b`` (B, D); row i of each is the
    other's positive. ``gram(z)`` gives all (2B, 2B) dot products of the rows of ``z = [a;
    b]``; `adarec.model.grouping.flat_gram` takes (B, L, D) sequences instead (flattened).
    Exactly ICLRec / ELCRec ``NCELoss`` without de-noising:
    - similarities are raw dot products divided by ``temperature`` (no cosine normalisation;
      the releases have it commented out);
    - symmetric, 2B anchors: anchor a_i scores ``[a_i.b_j for all j ; a_i.a_j for j != i]``,
      anchor b_i scores ``[b_i.b_j for j != i ; b_i.a_j for all j]``; the positive is
      a_i.b_i; so within-view similarities are negatives with the self-similarity masked out
      (SimCLR's NT-Xent on unnormalised vectors);
    - the result is the cross-entropy averaged over the 2B anchors.

    ``groups`` (B,) ids (e.g. each row's intent) turn de-noising on, as ``NCELoss(...,
    intent_ids)`` does: rows of the same group are never each other's negatives, so a_i.a_j,
    b_i.b_j and (for i != j) a_i.b_j, b_i.a_j are masked wherever ``groups[i] ==
    groups[j]``. The original release's intent loss uses it (docs/release.md).
    """
    batch = a.shape[0]
    sims = gram(torch.cat([a, b])) / temperature  # (2B, 2B)
    self_pair = torch.eye(batch, dtype=torch.bool, device=a.device)
    same = self_pair if groups is None else groups[:, None] == groups[None, :]  # (B, B)
    sim_ab = sims[:batch, batch:]
    if groups is not None:
        sim_ab = sim_ab.masked_fill(same & ~self_pair, float("-inf"))
    sim_aa = sims[:batch, :batch].masked_fill(same, float("-inf"))
    sim_bb = sims[batch:, batch:].masked_fill(same, float("-inf"))
    logits = torch.cat(
        [torch.cat([sim_ab, sim_aa], dim=1), torch.cat([sim_bb, sim_ab.T], dim=1)], dim=0
    )  # (2B, 2B); the positive of row r is column r
    labels = torch.arange(2 * batch, device=a.device)
    return F.cross_entropy(logits, labels)


def cluster_loss(x: Tensor, centres: Tensor) -> Tensor:
    """ELCRec's clustering loss ``mean_{b,k} ||x_b - c_k||^2 - mean_{k,l} ||c_k - c_l||^2``.

    ``x`` (B, D) and ``centres`` (K, D) are L2-normalised here (ELCRec normalises both before
    the distances). The centre-centre mean runs over all K * K pairs, diagonal zeros included,
    as in ELCRec (its line that drops the diagonal discards its result). Unweighted: the caller
    multiplies by ``trade_off``.
    """
    x = F.normalize(x, dim=-1)
    c = F.normalize(centres, dim=-1)
    return _sq_dist(x, c).mean() - _sq_dist(c, c).mean()


class IntentCentres(nn.Module):
    """K learnable intent centres (K, D), initialised once by k-means, then trained end to end."""

    def __init__(self, n_intents: int, dim: int) -> None:
        super().__init__()
        # Placeholder until `initialise` (ELCRec leaves the tensor uninitialised instead).
        self.centres = nn.Parameter(F.normalize(torch.randn(n_intents, dim), dim=-1))

    def unit(self) -> Tensor:
        """(K, D) L2-normalised centres, differentiable."""
        return F.normalize(self.centres, dim=-1)

    @torch.no_grad()
    def initialise(self, reps: Tensor, seed: int, *, n_init: int = 1, max_iter: int = 20) -> None:
        """Run k-means on ``reps`` (N, D) and copy the L2-normalised centroids in.

        ELCRec clusters the raw mean-pooled outputs with faiss (20 iterations, 5 random
        restarts) and normalises the centroids; here scikit-learn's k-means++ with
        ``n_init`` runs, ``max_iter`` iterations and ``random_state=seed``. Under torchrun
        ``reps`` are this process's rows: all processes' rows are gathered in rank order,
        rank 0 runs k-means once and its centres are copied to the others.
        """
        reps = gather_rows(reps)
        n_intents, dim = self.centres.shape
        if reps.ndim != 2 or reps.shape[1] != dim:
            raise ValueError(
                f"expected representations of shape (N, {dim}), got {tuple(reps.shape)}"
            )
        if reps.shape[0] < n_intents:
            raise AdarecError(
                f"k-means needs at least {n_intents} representations for {n_intents} intent "
                f"centres, got {reps.shape[0]}; use fewer intents or more training sequences"
            )
        if is_main():
            from sklearn.cluster import KMeans  # imported here: slow, needed once per run

            data = reps.detach().to("cpu", torch.float32).numpy()
            kmeans = KMeans(n_clusters=n_intents, n_init=n_init, max_iter=max_iter,
                            random_state=seed)
            centroids = torch.from_numpy(kmeans.fit(data).cluster_centers_).to(self.centres)
            self.centres.copy_(F.normalize(centroids, dim=-1))
        broadcast_module(self)  # rank 0's centres everywhere (nothing to do alone)

    def nearest(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Nearest centre of each vector of ``x`` (..., D): indices (...) and centres (..., D).

        Nearest = smallest L2 distance between normalised x and the unit centres, i.e. the
        largest dot product x . c. ELCRec measures the clean sequence on normalised vectors and
        each view position on raw outputs against its unit centres; both reduce to this argmax.
        The returned centres carry gradient to the parameter (ELCRec indexes the parameter).
        """
        centres = self.unit()
        index = (x.detach() @ centres.detach().T).argmax(dim=-1)
        # index_select, not centres[index]: the same rows, and on the CPU a backward several
        # times faster than advanced indexing's.
        return index, centres.index_select(0, index.flatten()).view(*index.shape, -1)

    def fuse(
        self,
        seq_out: Tensor,
        mode: Fusion,
        *,
        assign: Assign = "position",
        mask: Tensor | None = None,
    ) -> Tensor:
        """Fuse outputs (B, L, D) with their nearest centre: (B, L, D) for ``"add"`` (ELCRec's
        "shift"), (B, L, 2D) for ``"concat"``. All L positions are fused, padding included.

        ``assign="position"`` (ELCRec's code): every position gets its own nearest centre.
        ``assign="sequence"``: every position gets the nearest centre of the sequence's
        ``mean_pool(seq_out, mask)``.
        """
        if assign == "position":
            _, shift = self.nearest(seq_out)  # (B, L, D)
        elif assign == "sequence":
            _, shift = self.nearest(mean_pool(seq_out, mask))  # (B, D)
            shift = shift.unsqueeze(1).expand_as(seq_out)
        else:
            raise ValueError(f"assign must be 'position' or 'sequence', got {assign!r}")
        if mode == "add":
            return seq_out + shift
        if mode == "concat":
            return torch.cat([seq_out, shift], dim=-1)
        raise ValueError(f"fusion mode must be 'add' or 'concat', got {mode!r}")


def _zero_padding(x: Tensor, mask: Tensor | None) -> Tensor:
    return x if mask is None else x * mask.unsqueeze(-1).to(x.dtype)


class IntentLosses(NamedTuple):
    """ELCRec's auxiliary losses, unweighted scalars (the caller weighs and sums them)."""

    cluster: Tensor
    instance: Tensor
    intent: Tensor


def intent_losses(
    clean_pooled: Tensor,
    view_outputs: tuple[Tensor, Tensor],
    centres: IntentCentres,
    *,
    fusion: Fusion,
    temperature: float = 1.0,
    view_masks: tuple[Tensor | None, Tensor | None] = (None, None),
    assign: Assign = "position",
    gram: Callable[[Tensor], Tensor] = self_dot,
) -> IntentLosses:
    """ELCRec's clustering, instance and intent losses for one batch.

    clean_pooled: (B, D) pooled encoder output of the clean inputs (the caller pools it, with
        ``mean_pool``, and decides whether to detach it; ELCRec does not detach).
    view_outputs: two (B, L, D) encoder outputs of the augmented views (one pass per view;
        ELCRec runs the views once for the instance loss and again for the intent loss).
    view_masks: optional (B, L) real-item masks: pooling then averages real positions only and
        fused padding positions are zeroed before flattening; None = ELCRec's behaviour (all
        L positions count).
    gram: with masks, the instance loss's Gram matrix of the fused views (B, L, D'), whose
        padding is zeroed (e.g. `LengthGrouping.gram`, which skips padding on the CPU);
        without masks always one product of the flattened views.

    - cluster: ``cluster_loss(clean_pooled, centres)``;
    - instance: each view fused with its nearest centres, flattened to (B, L * D) or
      (B, L * 2D), ``info_nce`` between the two views;
    - intent: ``info_nce`` between each view's pooled output and the (unit) nearest centre of
      the clean sequence, averaged over the two views (ELCRec's ``PCLoss``).
    """
    cluster = cluster_loss(clean_pooled, centres.centres)
    fused = [
        _zero_padding(centres.fuse(out, fusion, assign=assign, mask=m), m)
        for out, m in zip(view_outputs, view_masks, strict=True)
    ]  # (B, L, D) or (B, L, 2D), flattened by the Gram matrix
    masked = all(m is not None for m in view_masks)  # zeros at padding: `gram` applies
    instance = info_nce(fused[0], fused[1], temperature, gram=gram if masked else self_dot)
    _, targets = centres.nearest(clean_pooled)  # (B, D)
    pooled = [mean_pool(out, m) for out, m in zip(view_outputs, view_masks, strict=True)]
    intent = (
        info_nce(pooled[0], targets, temperature) + info_nce(pooled[1], targets, temperature)
    ) / 2
    return IntentLosses(cluster=cluster, instance=instance, intent=intent)
