"""One-epoch smoke runs of every preset (and ADARec ablation) through `fit`, on tiny data.

Synthetic runs shrink the width so the whole set stays fast; the Beauty-subset runs keep each
preset's own architecture. Each run must write its files and give finite test metrics.
"""

from __future__ import annotations

import json
import math

import pytest

from adarec.config import load_config, preset_names
from adarec.data.reader import read_sequences, write_sequences
from adarec.data.sequences import Sequences
from adarec.train import fit

TINY = [
    "data.dataset=synthetic", "data.synthetic_users=150", "data.synthetic_items=60",
    "model.hidden_size=16", "intents.n_intents=8", "train.max_epochs=1", "train.batch_size=64",
]
ABLATIONS = {
    "without-ADC": ["adarec.controller=fixed", "adarec.fixed_depth=3"],
    "without-HDA": ["adarec.denoise=false"],
    "one-expert": ["adarec.experts=1"],
    "without-router": ["adarec.router=constant"],
    "without-Lcont": ["adarec.cont_weight=0"],
    "moe-only": ["adarec.max_depth=0", "adarec.fixed_depth=0"],
}


def _check_run(run_dir, results):
    for name in ("config.yaml", "metrics.jsonl", "best.pt", "results.json"):
        assert (run_dir / name).is_file(), name
    for name, value in results["test"]["all"].items():
        assert math.isfinite(value) and value >= 0, name
    assert json.loads((run_dir / "results.json").read_text())["test"] == results["test"]


@pytest.mark.parametrize("preset", preset_names())
def test_every_preset_runs_one_epoch_on_synthetic_data(preset, tmp_path):
    config = load_config(preset, overrides=[*TINY, f"output_dir={tmp_path}"])
    run_dir, results = fit(config, progress=False)
    _check_run(run_dir, results)
    members = 2 if config.model.name == "release" else 1
    assert results["epochs_run"] == members


@pytest.mark.parametrize("ablation", list(ABLATIONS))
def test_every_adarec_ablation_runs_one_epoch(ablation, tmp_path):
    overrides = [*TINY, "adarec.max_depth=4", *ABLATIONS[ablation], f"output_dir={tmp_path}"]
    run_dir, results = fit(load_config("adarec-beauty", overrides=overrides), progress=False)
    _check_run(run_dir, results)


@pytest.fixture(scope="module")
def beauty_subset(beauty_file, tmp_path_factory):
    seqs = read_sequences(beauty_file)
    path = tmp_path_factory.mktemp("beauty") / "beauty-400.txt"
    write_sequences(Sequences.from_lists(seqs.to_lists()[:400]), path)
    return path


# ADARec's 23 encoder passes per batch at width 256 take minutes on 2 CPU cores even here;
# its presets run on synthetic data above.
@pytest.mark.parametrize("preset", ["elcrec-beauty", "release-beauty"])
def test_beauty_subset_one_epoch(preset, beauty_subset, tmp_path):
    overrides = [f"data.data_file={beauty_subset}", "data.dataset=file", "train.max_epochs=1",
                 "intents.n_intents=32", f"output_dir={tmp_path}"]
    run_dir, results = fit(load_config(preset, overrides=overrides), progress=False)
    _check_run(run_dir, results)


def test_evaluation_is_bit_identical_across_two_runs_with_one_seed(tmp_path):
    overrides = [*TINY, "adarec.max_depth=3", f"output_dir={tmp_path}"]
    config = load_config("adarec-beauty", overrides=overrides)
    _, first = fit(config, progress=False)
    _, second = fit(config, progress=False)
    assert first["test"] == second["test"] and first["valid"] == second["valid"]


def test_the_equal_width_preset_has_sasrec_beauty_s_encoder_and_no_intents():
    """`adarec-beauty-h64` is the equal-width comparison's ADARec (docs/method.md): each
    expert is `sasrec-beauty`'s encoder, trained the same way, and the coarse side carries no
    ELCRec intents (they collapse it at this width)."""
    from adarec.model.build import build_model

    ada, sas = load_config("adarec-beauty-h64"), load_config("sasrec-beauty")
    for key in ("hidden_size", "num_layers", "num_heads", "attn_dropout", "hidden_dropout",
                "rec_loss"):
        assert getattr(ada.model, key) == getattr(sas.model, key), key
    assert (ada.data, ada.train.batch_size, ada.train.lr, ada.train.patience) == (
        sas.data, sas.train.batch_size, sas.train.lr, sas.train.patience)
    model = build_model(ada, n_items=30, max_len=ada.data.max_len)
    assert not ada.adarec.intents and len(model.aux) == 0
    assert set(model.loss_weights) == {"rec", "deno", "cont", "expl"}
