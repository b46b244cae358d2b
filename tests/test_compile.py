"""TorchDynamo traces every GPU-path training loss as one graph, without breaks, so that
`runtime.compile` (e.g. ``compile_mode=reduce-overhead``, CUDA graphs) captures whole steps.
Traced with the eager backend: no compiler runs, so this is quick on the CPU."""

from __future__ import annotations

import pytest
import torch._dynamo as dynamo

from adarec.config import load_config
from adarec.model.build import build_model
from adarec.model.interface import Batch
from adarec.setup import prepare_data, seed_everything
from adarec.train import DYNAMO_CONFIG


def _explain(preset: str):
    # The CPU through the GPU's code path: whole batches. While compiling, the CPU-only
    # shortcuts (packed GRUs, gathering real positions) step aside by themselves.
    config = load_config(preset, overrides=[
        "data.dataset=synthetic", "data.synthetic_users=200", "model.hidden_size=16",
        "intents.n_intents=8", "adarec.max_depth=3", "runtime.length_buckets=1"])
    seed_everything(1)
    splits, info = prepare_data(config)
    model = build_model(config, n_items=info.n_items, max_len=info.max_len)
    member = next(iter(getattr(model, "members", [model])))
    member.before_training(splits.train.inputs, 1)
    member.train()
    dynamo.reset()
    batch = Batch(splits.train.inputs[:32], splits.train.targets[:32])
    with dynamo.config.patch(**DYNAMO_CONFIG):  # as `adarec.train.loss_function` compiles
        return dynamo.explain(member.loss)(batch)


@pytest.mark.parametrize("preset", ["default", "elcrec-beauty", "adarec-beauty",
                                    "release-beauty"])
def test_loss_traces_as_one_graph(preset):
    explained = _explain(preset)
    reasons = [str(r.reason)[:120] for r in explained.break_reasons]
    assert explained.graph_break_count == 0, reasons
    assert explained.graph_count == 1


def test_without_allow_rnn_the_gru_would_break_the_graph(monkeypatch):
    """Why `DYNAMO_CONFIG` sets ``allow_rnn``: by default Dynamo does not trace nn.GRU."""
    monkeypatch.setitem(DYNAMO_CONFIG, "allow_rnn", False)
    explained = _explain("release-beauty")
    assert explained.graph_break_count >= 1
