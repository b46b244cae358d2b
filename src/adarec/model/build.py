"""The one place that reads the configuration and builds a model from parts."""

from __future__ import annotations

from torch import nn

from adarec.config import ADARecConfig, IntentsConfig, ModelConfig, RunConfig
from adarec.model.adarec import ADARec
from adarec.model.diffusion import (
    Denoiser,
    DepthController,
    FixedDepth,
    HierarchicalDiffusion,
    linear_alpha_bars,
)
from adarec.model.elcrec import IntentLearning
from adarec.model.encoder import SequenceEmbedding, Transformer, init_weights
from adarec.model.experts import ConstantRouter, ContentRouter, Gate
from adarec.model.intents import IntentCentres
from adarec.model.losses import rec_loss
from adarec.model.release import ReleaseController, ReleaseEnsemble, ReleaseMember
from adarec.model.sasrec import SASRec


def build_intents(cfg: IntentsConfig, dim: int) -> tuple[IntentLearning, dict[str, float]]:
    """ELCRec's intent part and the weights of its three losses."""
    part = IntentLearning(
        centres=IntentCentres(cfg.n_intents, dim), fusion=cfg.fusion,
        temperature=cfg.temperature, assign=cfg.assign, crop_ratio=cfg.crop_ratio,
        mask_ratio=cfg.mask_ratio, reorder_ratio=cfg.reorder_ratio,
    )
    weights = {"cluster": cfg.trade_off, "instance": cfg.instance_weight,
               "intent": cfg.intent_weight}
    return part, weights


def _transformer(cfg: ModelConfig) -> Transformer:
    return Transformer(
        dim=cfg.hidden_size, n_layers=cfg.num_layers, n_heads=cfg.num_heads,
        attn_dropout=cfg.attn_dropout, hidden_dropout=cfg.hidden_dropout,
    )


def _adarec(config: RunConfig, embedding: SequenceEmbedding, n_items: int, max_len: int):
    a: ADARecConfig = config.adarec
    dim = config.model.hidden_size
    if a.controller == "adaptive":
        controller = DepthController(dim=dim, max_depth=a.max_depth, max_len=max_len,
                                     tau=a.gumbel_tau)
    else:
        controller = FixedDepth(depth=a.fixed_depth, max_depth=a.max_depth)
    diffusion = HierarchicalDiffusion(
        denoiser=Denoiser(dim=dim, max_depth=a.max_depth) if a.denoise else None,
        max_depth=a.max_depth, n_steps=a.diffusion_steps, beta_start=a.beta_start,
        beta_end=a.beta_end, eval_noise=a.eval_noise, eval_seed=config.train.seed,
    )
    fine = _transformer(config.model)
    one_expert = a.experts == 1
    router = (ConstantRouter(0.5) if one_expert or a.router == "constant"
              else ContentRouter(dim=dim, max_depth=a.max_depth))
    intents, weights = (build_intents(config.intents, dim) if a.intents else (None, {}))
    weights = {**weights, "deno": a.deno_weight, "cont": a.cont_weight, "expl": a.expl_weight}
    return ADARec(
        embedding=embedding, controller=controller, diffusion=diffusion, fine=fine,
        coarse=fine if one_expert else _transformer(config.model), router=router,
        gate=Gate(dim), rec_loss=rec_loss(config.model.rec_loss, n_items), intents=intents,
        cont_temperature=a.cont_temperature, loss_weights=weights,
    )


def _release(config: RunConfig, n_items: int, max_len: int) -> ReleaseEnsemble:
    m, r, i = config.model, config.release, config.intents
    schedule = linear_alpha_bars(r.diffusion_steps, r.beta_start, r.beta_end)
    weights = {"rec": 1.0, "rec_noised": r.noised_weight, "consistency": r.consistency_weight,
               "expl": r.entropy_weight, "instance": i.instance_weight, "cluster": i.trade_off,
               "intent": i.intent_weight}
    members = [
        ReleaseMember(
            # The release's item table has a spare row after the last item (item_size = n + 2).
            embedding=SequenceEmbedding(n_rows=n_items + 2, max_len=max_len, dim=m.hidden_size,
                                        dropout=m.hidden_dropout),
            transformer=_transformer(m),
            controller=ReleaseController(dim=m.hidden_size, max_len=max_len,
                                         n_choices=len(depths)),
            centres=IntentCentres(i.n_intents, m.hidden_size),
            alpha_bars=schedule[[d - 1 for d in depths]],
            rec_loss=rec_loss(m.rec_loss, n_items), loss_weights=weights,
            temperature=i.temperature,
        )
        for depths in r.member_depths()
    ]
    return ReleaseEnsemble(members)


def build_model(config: RunConfig, *, n_items: int, max_len: int) -> nn.Module:
    """Build the model named by ``config.model.name`` for ``n_items`` items, inputs of
    ``max_len``: ``sasrec`` is SASRec alone; ``elcrec`` is SASRec with ELCRec's intent
    learning (``config.intents``); ``adarec`` is the paper's model (``config.adarec``).
    """
    cfg = config.model
    embedding = SequenceEmbedding(
        n_rows=n_items + 1, max_len=max_len, dim=cfg.hidden_size, dropout=cfg.hidden_dropout
    )
    if cfg.name == "adarec":
        model = _adarec(config, embedding, n_items, max_len)
    elif cfg.name == "release":
        model = _release(config, n_items, max_len)
    else:
        aux, weights = {}, {}
        if cfg.name == "elcrec":
            aux["intents"], weights = build_intents(config.intents, cfg.hidden_size)
        model = SASRec(
            embedding=embedding, transformer=_transformer(cfg),
            rec_loss=rec_loss(cfg.rec_loss, n_items), aux=aux, loss_weights=weights,
        )
    init_weights(model)
    return model
