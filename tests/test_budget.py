"""The memory check (docs/configuration.md#memory-check): impossible sizes are refused before
anything is built, with the estimate and the free memory in one line; real presets pass."""

from __future__ import annotations

import time

import pytest
import torch
from inprocess_cli import run_cli, user_error

from adarec import budget
from adarec.config import load_config, preset_names
from adarec.errors import AdarecError

CPU = torch.device("cpu")


@pytest.mark.parametrize("preset", [n for n in preset_names() if n != "default"])
def test_every_preset_fits_a_24_gib_machine_on_its_dataset(preset: str, monkeypatch):
    """The Beauty-sized catalogue is the smallest; Yelp's is the largest (20,033 items)."""
    monkeypatch.setattr(budget, "available_bytes", lambda device: 20 * budget.GIB)
    config = load_config(preset)
    budget.check_memory(config, n_items=20033, max_len=config.data.max_len, train_rows=35598,
                        device=CPU, eval_batch_size=2048)


def test_the_estimate_counts_weights_activations_and_scores():
    config = load_config("sasrec-beauty")  # hidden 64, 1 layer, 2 heads, ce, batch 256
    est = budget.estimate(config, n_items=99, max_len=10, train_rows=1000, eval_batch_size=8)
    assert est.weights == 16 * (12 * 64 * 64 + 100 * 64)
    assert est.activations == 4 * (256 * 10 * (8 * 64 + 2 * 10) + 2 * 256 * 10 * 100)
    assert est.evaluation == 4 * 2 * 8 * 100
    assert est.total == est.weights + est.activations
    # A batch larger than the data is the data.
    few = budget.estimate(config, n_items=99, max_len=10, train_rows=3, eval_batch_size=8)
    assert few.activations == 4 * (3 * 10 * (8 * 64 + 2 * 10) + 2 * 3 * 10 * 100)


@pytest.mark.parametrize("setting", ["model.hidden_size=1000000000", "model.num_layers=1000000",
                                     "train.batch_size=1000000000000"])
def test_impossible_sizes_are_refused_at_once(setting: str, tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "available_bytes", lambda device: 2 * budget.GIB)
    start = time.perf_counter()
    line = user_error(run_cli("train", "--preset", "sasrec-beauty", "--dataset", "synthetic",
                              "--set", "data.synthetic_users=30000",
                              "--set", "data.synthetic_items=12000",
                              "--output-dir", tmp_path, "--no-progress", "--set", setting),
                      "this configuration needs at least")
    assert "GiB free" in line and "runtime.memory_check=false" in line
    assert time.perf_counter() - start < 60  # nothing was built
    assert not any(tmp_path.iterdir())  # no run directory either


def test_memory_check_false_lets_it_through(monkeypatch):
    monkeypatch.setattr(budget, "available_bytes", lambda device: 1)
    config = load_config("sasrec-beauty")
    with pytest.raises(AdarecError, match="needs at least"):
        budget.check_memory(config, n_items=100, max_len=50, train_rows=10, device=CPU,
                            eval_batch_size=8)
    off = load_config("sasrec-beauty", overrides=["runtime.memory_check=false"])
    budget.check_memory(off, n_items=100, max_len=50, train_rows=10, device=CPU,
                        eval_batch_size=8)


def test_available_memory_is_read():
    free = budget.available_bytes(CPU)
    assert free is None or free > 0


def test_chunked_and_sampled_losses_need_less_than_full_softmax():
    big = {"n_items": 1_000_000, "max_len": 50, "train_rows": 10**6, "eval_batch_size": 64}
    full = budget.estimate(load_config("sasrec-beauty"), **big)
    assert full.activations > 90 * budget.GIB  # a (256 x 50) x 1M logit matrix, twice
    for setting in ("model.ce_chunk_items=8192", "model.rec_loss=sampled_softmax",
                    "model.rec_loss=gbce"):
        est = budget.estimate(load_config("sasrec-beauty", overrides=[setting]), **big)
        assert est.activations < 2 * budget.GIB, setting



def test_the_default_evaluation_batch_shrinks_for_large_catalogues():
    from adarec.setup import EVAL_BLOCK_BYTES, eval_batch_size

    runtime = load_config().runtime
    gpu = torch.device("cuda")
    # The benchmark catalogues keep the defaults (their results do not move).
    assert eval_batch_size(runtime, CPU, 20033) == 512
    assert eval_batch_size(runtime, gpu, 20033) == 2048
    big = eval_batch_size(runtime, CPU, 1_000_000)
    assert big == 44 and 12 * big * 1_000_001 <= EVAL_BLOCK_BYTES
    fixed = load_config(overrides=["runtime.eval_batch_size=1000"]).runtime
    assert eval_batch_size(fixed, CPU, 1_000_000) == 1000  # a configured size is kept
