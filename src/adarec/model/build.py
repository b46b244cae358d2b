"""The one place that reads the configuration and builds a model from parts."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from adarec.config import ADARecConfig, IntentsConfig, ModelConfig, RunConfig
from adarec.model.adarec import ADARec
from adarec.model.diffusion import (
    Denoiser,
    DepthController,
    FixedDepth,
    HierarchicalDiffusion,
    linear_alpha_bars,
    span_alpha_bars,
)
from adarec.model.elcrec import IntentLearning
from adarec.model.encoder import SequenceEmbedding, Transformer, init_weights
from adarec.model.experts import ConstantRouter, ContentRouter, Gate
from adarec.model.grouping import LengthGrouping, group_cost
from adarec.model.intents import IntentCentres, self_dot
from adarec.model.losses import rec_loss
from adarec.model.release import (
    ReleaseController,
    ReleaseEnsemble,
    ReleaseMember,
    last_state_all_steps,
    last_state_real_steps,
)
from adarec.model.sasrec import SASRec


class Grouping:
    """The CPU length grouping of each part (`adarec.model.grouping`), from
    ``runtime.length_buckets`` (at most 1: none, batches run whole) and a part's width."""

    def __init__(self, buckets: int, cost: int | None = None) -> None:
        self.buckets, self.cost = buckets, cost  # cost: one price for every part (tests: 0)

    def __call__(self, dim: int, scale: int = 1) -> LengthGrouping | None:
        """A part of width ``dim``; ``scale`` multiplies the price of a group (`group_cost`)."""
        if self.buckets <= 1:
            return None
        return LengthGrouping(self.buckets, scale * group_cost(dim) if self.cost is None
                              else self.cost)

    def gram(self, dim: int) -> Callable[[Tensor], Tensor]:
        """The Gram matrix of masked flattened sequences of width ``dim``."""
        grouping = self(dim)
        return self_dot if grouping is None else grouping.gram


def build_intents(
    cfg: IntentsConfig, dim: int, grouping: Grouping | None = None,
) -> tuple[IntentLearning, dict[str, float]]:
    """ELCRec's intent part and the weights of its three losses."""
    grouping = grouping or Grouping(1)
    fused = 2 * dim if cfg.fusion == "concat" else dim  # the width of the instance loss's views
    part = IntentLearning(
        centres=IntentCentres(cfg.n_intents, dim), fusion=cfg.fusion,
        temperature=cfg.temperature, assign=cfg.assign, crop_ratio=cfg.crop_ratio,
        mask_ratio=cfg.mask_ratio, reorder_ratio=cfg.reorder_ratio, gram=grouping.gram(fused),
        pool=cfg.pool,
    )
    weights = {"cluster": cfg.trade_off, "instance": cfg.instance_weight,
               "intent": cfg.intent_weight}
    return part, weights


def _rec_loss(cfg: ModelConfig, n_items: int) -> nn.Module:
    return rec_loss(cfg.rec_loss, n_items, negatives=cfg.negatives, gbce_t=cfg.gbce_t,
                    chunk_items=cfg.ce_chunk_items, sampling=cfg.negative_sampling)


def _transformer(cfg: ModelConfig, grouping: Grouping) -> Transformer:
    return Transformer(
        dim=cfg.hidden_size, n_layers=cfg.num_layers, n_heads=cfg.num_heads,
        attn_dropout=cfg.attn_dropout, hidden_dropout=cfg.hidden_dropout,
        grouping=grouping(cfg.hidden_size),
    )


def level_alpha_bars(a: ADARecConfig) -> Tensor:
    """(T_max,) ``abar_k`` of levels 1..T_max: step k of the linear beta schedule of
    ``diffusion_steps`` steps (``schedule=linear``), or noise std spaced evenly up to
    ``sqrt(1 - abar_at_max)`` (``schedule=span``)."""
    if a.schedule == "span":
        return span_alpha_bars(a.max_depth, a.abar_at_max)
    return linear_alpha_bars(a.diffusion_steps, a.beta_start, a.beta_end)[: a.max_depth]


def _adarec(
    config: RunConfig, embedding: SequenceEmbedding, n_items: int, max_len: int,
    grouping: Grouping,
) -> ADARec:
    a: ADARecConfig = config.adarec
    dim = config.model.hidden_size
    if a.controller == "adaptive":
        controller = DepthController(dim=dim, max_depth=a.max_depth, max_len=max_len,
                                     tau=a.gumbel_tau, draw=a.depth_draw)
    else:
        controller = FixedDepth(depth=a.fixed_depth, max_depth=a.max_depth)
    diffusion = HierarchicalDiffusion(
        # No levels (max_depth=0, "HP-MoE only"): nothing to denoise, and no parameter that
        # no loss reaches (DistributedDataParallel relies on it: adarec.distributed).
        denoiser=Denoiser(dim=dim, max_depth=a.max_depth) if a.denoise and a.max_depth else None,
        alpha_bars=level_alpha_bars(a), eval_noise=a.eval_noise, eval_seed=config.train.seed,
        rec_grad=a.denoiser_grad == "rec",
    )
    fine = _transformer(config.model, grouping)
    one_expert = a.experts == 1
    router = (ConstantRouter(0.5) if one_expert or a.router == "constant"
              else ContentRouter(dim=dim, max_depth=a.max_depth))
    intents, weights = (build_intents(config.intents, dim, grouping) if a.intents
                        else (None, {}))
    weights = {**weights, "deno": a.deno_weight, "cont": a.cont_weight, "expl": a.expl_weight}
    return ADARec(
        embedding=embedding, controller=controller, diffusion=diffusion, fine=fine,
        coarse=fine if one_expert else _transformer(config.model, grouping), router=router,
        gate=Gate(dim), rec_loss=_rec_loss(config.model, n_items), intents=intents,
        cont_temperature=a.cont_temperature, loss_weights=weights, grouping=grouping(dim),
    )


def _release(config: RunConfig, n_items: int, max_len: int, grouping: Grouping
             ) -> ReleaseEnsemble:
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
            transformer=_transformer(m, grouping),
            controller=ReleaseController(
                dim=m.hidden_size, n_choices=len(depths),
                last_state=last_state_all_steps if r.gru_reads_padding
                else last_state_real_steps),
            centres=IntentCentres(i.n_intents, m.hidden_size),
            alpha_bars=schedule[[d - 1 for d in depths]],
            rec_loss=_rec_loss(m, n_items), loss_weights=weights,
            temperature=i.temperature, view_passes=r.view_passes,
            # Fewer, wider groups than the encoder's: each group runs the controller's GRU
            # over its own width, one step at a time (measured on Beauty at width 256: a
            # group price of 128 beat 32 and 0).
            grouping=grouping(m.hidden_size, scale=4), gram=grouping.gram(m.hidden_size),
        )
        for depths in r.depths
    ]
    return ReleaseEnsemble(members)


def build_model(
    config: RunConfig, *, n_items: int, max_len: int, group_cost: int | None = None,
) -> nn.Module:
    """Build the model named by ``config.model.name`` for ``n_items`` items, inputs of
    ``max_len``: ``sasrec`` is SASRec alone; ``elcrec`` is SASRec with ELCRec's intent
    learning (``config.intents``); ``adarec`` is the paper's model (``config.adarec``).

    On the CPU its parts run rows in at most ``config.runtime.length_buckets`` length groups
    (`adarec.model.grouping`); ``group_cost`` replaces every part's measured price of a group
    (tests: 0 splits wherever a padded position is saved).
    """
    cfg = config.model
    grouping = Grouping(config.runtime.length_buckets, group_cost)
    embedding = SequenceEmbedding(
        n_rows=n_items + 1, max_len=max_len, dim=cfg.hidden_size, dropout=cfg.hidden_dropout
    )
    if cfg.name == "adarec":
        model = _adarec(config, embedding, n_items, max_len, grouping)
    elif cfg.name == "release":
        model = _release(config, n_items, max_len, grouping)
    else:
        aux, weights = {}, {}
        if cfg.name == "elcrec":
            aux["intents"], weights = build_intents(config.intents, cfg.hidden_size, grouping)
        model = SASRec(
            embedding=embedding, transformer=_transformer(cfg, grouping),
            rec_loss=_rec_loss(cfg, n_items), aux=aux, loss_weights=weights,
        )
    init_weights(model)
    if cfg.name == "release":  # its controllers keep PyTorch's defaults, as in the release
        for member in model.members:
            member.controller.reset_to_torch_defaults()
    return model
