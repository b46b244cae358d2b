"""Every built model, the release's ensemble included, has the interface of
`adarec.model.interface.Recommender`, and each of its training stages has it too."""

from __future__ import annotations

import pytest
import torch

from adarec.config import load_config
from adarec.model.build import build_model
from adarec.model.interface import Batch, Recommender

SMALL = ["model.hidden_size=16", "intents.n_intents=4", "adarec.max_depth=2"]


@pytest.mark.parametrize("preset", ["default", "elcrec-beauty", "adarec-beauty",
                                    "release-beauty"])
def test_every_model_and_stage_satisfies_the_interface(preset: str) -> None:
    torch.manual_seed(0)
    model = build_model(load_config(preset, overrides=SMALL), n_items=30, max_len=8)
    ids = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8], [0, 0, 0, 0, 0, 1, 2, 9]])
    for m in [model, *(stage.model for stage in model.stages())]:
        assert isinstance(m, Recommender), type(m).__name__
        assert m.item_table.shape[-1] == 16
        m.train()
        with m.evaluating():
            assert not m.training
            scores = m.score(ids)
        assert m.training  # the mode before the block is back
        assert scores.shape[0] == 2 and scores.shape[1] >= 31
        out = m.loss(Batch(ids, ids.roll(-1, 1)))
        assert out.total.ndim == 0 and torch.isfinite(out.total)
    tags = [stage.tag for stage in model.stages()]
    assert tags == (["/member0", "/member1"] if preset.startswith("release") else [""])


def test_evaluating_restores_eval_mode_too() -> None:
    model = build_model(load_config("default", overrides=SMALL), n_items=30, max_len=8)
    model.eval()
    with model.evaluating():
        pass
    assert not model.training
