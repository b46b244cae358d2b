"""TorchDynamo traces the GPU-path training losses without graph breaks where it can, so that
`train.compile` (e.g. ``compile_mode=reduce-overhead``, CUDA graphs) captures whole steps.
Traced with the eager backend: no compiler runs, so this is quick on the CPU."""

from __future__ import annotations

import pytest
import torch._dynamo as dynamo

import adarec.model.diffusion as diffusion
import adarec.model.release as release
from adarec.config import load_config
from adarec.model.build import build_model
from adarec.model.encoder import set_length_buckets
from adarec.model.sasrec import Batch
from adarec.train import prepare_data, seed_everything


def _explain(preset: str, monkeypatch):
    # Emulate the GPU path on the CPU: whole batches, no boolean gathers, unpacked GRUs.
    plain = diffusion.run_gru
    monkeypatch.setattr(diffusion, "run_gru", lambda gru, x, lengths=None: plain(gru, x))
    monkeypatch.setattr(release, "run_gru", lambda gru, x, lengths=None: plain(gru, x))
    config = load_config(preset, overrides=[
        "data.dataset=synthetic", "data.synthetic_users=200", "model.hidden_size=16",
        "intents.n_intents=8", "adarec.max_depth=3"])
    seed_everything(1)
    splits, info = prepare_data(config)
    model = build_model(config, n_items=info.n_items, max_len=info.max_len)
    set_length_buckets(model, 1)
    for module in model.modules():
        if hasattr(module, "gather_real"):
            module.gather_real = False
    member = next(iter(getattr(model, "members", [model])))
    member.before_training(splits.train.inputs, 1)
    member.train()
    dynamo.reset()
    batch = Batch(splits.train.inputs[:32], splits.train.targets[:32])
    return dynamo.explain(member.loss)(batch)


@pytest.mark.parametrize("preset", ["default", "elcrec-beauty"])
def test_loss_traces_as_one_graph(preset, monkeypatch):
    explained = _explain(preset, monkeypatch)
    reasons = [str(r.reason)[:120] for r in explained.break_reasons]
    assert explained.graph_break_count == 0, reasons


@pytest.mark.parametrize("preset", ["adarec-beauty", "release-beauty"])
def test_only_the_gru_breaks_the_graph(preset, monkeypatch):
    """Dynamo does not trace nn.GRU; nothing else may break the graph."""
    explained = _explain(preset, monkeypatch)
    for r in explained.break_reasons:
        where = r.user_stack[-1].filename if r.user_stack else ""
        assert where.endswith(("diffusion.py", "release.py")), str(r.reason)[:200]
        assert "GRU" in str(r.reason) or "step_unsupported" in str(r.reason), str(r.reason)[:200]
