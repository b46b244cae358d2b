"""SASRec's transformer encoder (docs/method.md#sasrec-encoder), nanoGPT-style small modules.

Post-LN blocks as in SASRec/ICLRec: ``x = LN(x + Drop(Attn(x)))``, ``x = LN(x + Drop(FFN(x)))``
with a 4x GELU feed-forward. Attention uses `scaled_dot_product_attention` with a causal +
key-padding mask. Inputs are left-padded, item 0 is padding.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from adarec.model.grouping import LengthGrouping, grouped

PaddingQueries = Literal["self", "all"]


def attention_mask(input_ids: torch.Tensor, padding_queries: PaddingQueries = "self"
                   ) -> torch.Tensor:
    """(B, 1, L, L) bool mask, True = may attend: causal, real keys (id > 0) only.

    A query none of whose causal keys is real (a padding position, or a zero id before the
    first real item) must see something, or its softmax is empty (NaN):

    * ``"self"`` (default): it sees itself. Cheap, and it changes no real output (with left
      padding a real query's keys are all real).
    * ``"all"``: it sees every key of its row, later items included. That is what SASRec's
      ports in ICLRec and ELCRec compute: their additive mask puts -10000 on every key of
      such a query, and a constant added to all scores leaves the softmax unchanged. Their
      padding outputs, which ELCRec's pooling over all positions reads
      (docs/method.md#elcrec-pooling), are these.

    Real queries get the same mask either way.
    """
    length = input_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=input_ids.device).tril()
    real_keys = (input_ids > 0)[:, None, None, :]  # (B, 1, 1, L)
    visible = causal & real_keys
    if padding_queries == "all":
        return visible | ~visible.any(-1, keepdim=True)
    if padding_queries != "self":
        raise ValueError(f"padding_queries must be 'self' or 'all', got {padding_queries!r}")
    return visible | torch.eye(length, dtype=torch.bool, device=input_ids.device)


class Dropout(nn.Dropout):
    """`nn.Dropout` with the same distribution (keep with probability 1 - p, scale by
    1 / (1 - p)) drawn from a uniform mask on the CPU, where PyTorch's Bernoulli sampling is
    the slow part (41 ms against 18 ms for a 256 x 50 x 256 tensor on 2 cores); on a GPU
    the fused kernel of `nn.Dropout` runs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu":
            return super().forward(x)
        return x * (torch.rand_like(x) >= self.p) * (1.0 / (1.0 - self.p))


class SelfAttention(nn.Module):
    def __init__(self, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False):
        """(B, L, D) -> (B, L, D); with ``last_only`` only the last position queries:
        (B, 1, D)."""
        b, length, dim = x.shape
        q, k, v = self.qkv(x).split(dim, dim=-1)
        if last_only:
            q, mask = q[:, -1:], mask[..., -1:, :]
        # (B, nh, L, hs)
        q, k, v = (t.reshape(b, -1, self.n_heads, dim // self.n_heads).transpose(1, 2)
                   for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(y.transpose(1, 2).reshape(b, q.shape[2], dim))


class FeedForward(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.up = nn.Linear(dim, 4 * dim)
        self.down = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    """One post-LN transformer layer."""

    def __init__(self, dim: int, n_heads: int, attn_dropout: float, hidden_dropout: float):
        super().__init__()
        self.attn = SelfAttention(dim, n_heads, attn_dropout)
        self.ln1 = nn.LayerNorm(dim, eps=1e-12)
        self.ff = FeedForward(dim)
        self.ln2 = nn.LayerNorm(dim, eps=1e-12)
        self.drop = Dropout(hidden_dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False):
        y = self.attn(x, mask, last_only)
        x = self.ln1((x[:, -1:] if last_only else x) + self.drop(y))
        return self.ln2(x + self.drop(self.ff(x)))


class Transformer(nn.Module):
    """A stack of `Block`s over already-embedded inputs: (B, L, D) -> (B, L, D).

    Separate from the embedding so that ADARec's experts can run it on diffused embeddings.

    With a ``grouping`` (`adarec.model.grouping`), rows on the CPU run in groups of similar
    length, each cut to its own longest row (rows are right-aligned: a row's width is the
    distance from its first visible key to the end). Every real position's output is the same as
    in one pass over the whole batch (padding keys are never attended to); positions left of a
    group's width are padding and come out as zeros, which no loss or score reads. This saves
    most of the work on data like Beauty (median 3 items, maximum 50). On a GPU it would cost a
    sync per call, so the batch runs whole there; ``grouping=None`` runs every batch whole.
    """

    def __init__(
        self, *, dim: int, n_layers: int, n_heads: int, attn_dropout: float,
        hidden_dropout: float, grouping: LengthGrouping | None = None,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            Block(dim, n_heads, attn_dropout, hidden_dropout) for _ in range(n_layers)
        )
        self.grouping = grouping

    def _layers(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x, mask, last_only and i == len(self.blocks) - 1)
        return x

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False,
        whole: bool = False,
    ) -> torch.Tensor:
        """(B, L, D) -> (B, L, D), or (B, 1, D) with ``last_only``: the last position's
        output alone (the last layer then computes no other query; scoring needs no more).
        ``whole`` runs the batch whole, without length groups: every position's output,
        padding included, as the mask says (ELCRec's pooling reads them)."""
        grouping = None if whole else grouped(self.grouping, x)
        if grouping is None:
            return self._layers(x, mask, last_only)
        length = x.shape[1]
        # The last query sees every visible key of its row; the first of them fixes the width.
        groups, inverse = grouping.groups(mask[:, 0, -1, :])
        widen = 0 if last_only else 1  # zeros on the left, back to width L
        parts = [
            F.pad(self._layers(x[rows, length - w :], mask[rows, :, length - w :, length - w :],
                               last_only), (0, 0, widen * (length - w), 0))
            for rows, w in groups
        ]
        # Back to the input's row order: one gather (its backward is one scatter; as an
        # index_select, several times faster on the CPU than advanced indexing's).
        return torch.cat(parts).index_select(0, inverse)


class SequenceEmbedding(nn.Module):
    """Item + learned absolute position embedding, LayerNorm, dropout: (B, L) -> (B, L, D).

    ``n_rows`` rows in the item table: row 0 is padding; a model may keep a spare row at the
    end (the original release does). The item table is shared with the output scores.
    Positions are counted from the right (the last column is always position
    ``max_len - 1``), so cutting all-padding columns off the left changes no output.
    """

    def __init__(self, *, n_rows: int, max_len: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.items = nn.Embedding(n_rows, dim, padding_idx=0)
        self.positions = nn.Embedding(max_len, dim)
        self.ln = nn.LayerNorm(dim, eps=1e-12)
        self.drop = Dropout(dropout)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        n_pos = self.positions.num_embeddings
        pos = torch.arange(n_pos - input_ids.shape[1], n_pos, device=input_ids.device)
        return self.drop(self.ln(self.items(input_ids) + self.positions(pos)))


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """SASRec/ICLRec initialisation: N(0, 0.02) weights, zero biases, unit LayerNorm."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
