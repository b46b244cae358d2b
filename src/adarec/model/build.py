"""The one place that reads the model configuration and builds a model from parts."""

from __future__ import annotations

from torch import nn

from adarec.config import ModelConfig
from adarec.model.encoder import SequenceEmbedding, Transformer, init_weights
from adarec.model.losses import rec_loss
from adarec.model.sasrec import SASRec


def build_model(cfg: ModelConfig, *, n_items: int, max_len: int) -> nn.Module:
    """Build the model named by ``cfg.name`` for ``n_items`` items and inputs of ``max_len``."""
    embedding = SequenceEmbedding(
        n_rows=n_items + 1, max_len=max_len, dim=cfg.hidden_size, dropout=cfg.hidden_dropout
    )
    transformer = Transformer(
        dim=cfg.hidden_size,
        n_layers=cfg.num_layers,
        n_heads=cfg.num_heads,
        attn_dropout=cfg.attn_dropout,
        hidden_dropout=cfg.hidden_dropout,
    )
    model = SASRec(
        embedding=embedding, transformer=transformer, rec_loss=rec_loss(cfg.rec_loss, n_items)
    )
    init_weights(model)
    return model
