"""The training loop's runtime options: precision, the compile fallback, time limits, stop
reasons. (CUDA-only behaviour is exercised by benchmarks/gpu_check.sh on a GPU machine.)"""

from __future__ import annotations

import json

import pytest
import torch

from adarec.config import load_config
from adarec.errors import AdarecError
from adarec.model.build import build_model
from adarec.setup import autocast_dtype, make_optimizer, prepare_data, seed_everything
from adarec.train import batch_rows, fit, loss_function, train_epoch

TINY = [
    "data.dataset=synthetic", "data.synthetic_users=150", "data.synthetic_items=60",
    "model.hidden_size=16", "train.batch_size=64",
]
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_autocast_dtype_follows_precision_and_device():
    assert autocast_dtype("auto", CPU) is None
    assert autocast_dtype("auto", CUDA) is torch.bfloat16
    assert autocast_dtype("bf16", CPU) is torch.bfloat16
    assert autocast_dtype("fp32", CUDA) is None


def test_unknown_precision_and_bad_time_limit_are_errors():
    with pytest.raises(AdarecError, match="runtime.precision"):
        load_config("default", overrides=["runtime.precision=fp16"])
    with pytest.raises(AdarecError, match="max_minutes"):
        load_config("default", overrides=["train.max_minutes=0"])


def _tiny_model(preset: str = "default", extra: tuple[str, ...] = ()):
    config = load_config(preset, overrides=[*TINY, "intents.n_intents=8", *extra])
    seed_everything(1)
    splits, info = prepare_data(config)
    model = build_model(config, n_items=info.n_items, max_len=info.max_len)
    return config, splits, model


@pytest.mark.parametrize("preset", ["default", "elcrec-beauty", "adarec-beauty"])
def test_bf16_autocast_trains_close_to_fp32(preset):
    """The same first epoch in bf16 and in fp32: finite, different (bf16 was in effect), and
    mean losses within 0.2% (measured: within 1e-5)."""
    means = {}
    for dtype in (None, torch.bfloat16):
        config, splits, model = _tiny_model(preset, ("adarec.max_depth=3",))
        model.before_training(splits.train.inputs, 1)
        opt = make_optimizer(model, config.train, CPU)
        gen = torch.Generator().manual_seed(1)
        means[dtype] = train_epoch(model, opt, splits.train, batch_size=64, generator=gen,
                                   autocast=dtype)["rec"]
    assert torch.isfinite(torch.tensor(means[torch.bfloat16]))
    assert means[torch.bfloat16] != means[None]  # the same fp32 run twice would be equal
    assert means[torch.bfloat16] == pytest.approx(means[None], rel=2e-3)


def test_compile_failure_falls_back_to_eager(monkeypatch):
    def broken_compile(fn, **kwargs):
        def call(*args, **kw):
            raise RuntimeError("no compiler here")
        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    config, splits, model = _tiny_model()
    loss = loss_function(model, compile=True)
    gen = torch.Generator().manual_seed(1)
    opt = make_optimizer(model, config.train, CPU)
    with pytest.warns(UserWarning, match="eager"):
        out = train_epoch(model, opt, splits.train, batch_size=64, generator=gen, loss_fn=loss)
    assert out["total"] > 0


def test_stop_reasons_and_time_limit(tmp_path):
    base = [*TINY, f"output_dir={tmp_path}"]
    _, done = fit(load_config("default", overrides=[*base, "train.max_epochs=2"]),
                  progress=False)
    assert done["stop_reason"] == "max_epochs" and done["epochs_run"] == 2
    _, patient = fit(load_config("default", overrides=[*base, "train.max_epochs=50",
                                                       "train.patience=1", "train.lr=1"]),
                     progress=False)
    assert patient["stop_reason"] == "patience" and patient["epochs_run"] < 50
    # A limit far shorter than one epoch: the first epoch runs, then the loop stops.
    run_dir, limited = fit(load_config("default", overrides=[*base, "train.max_minutes=1e-6"]),
                           progress=False)
    assert limited["stop_reason"] == "time_limit" and limited["epochs_run"] == 1
    assert json.loads((run_dir / "results.json").read_text())["stop_reason"] == "time_limit"
    assert limited["median_train_seconds"] > 0 and limited["peak_gpu_memory_mib"] is None


def test_ensemble_members_share_the_time_limit(tmp_path):
    config = load_config("release-beauty", overrides=[
        *TINY, "intents.n_intents=8", "train.max_minutes=1e-6", f"output_dir={tmp_path}"])
    _, results = fit(config, progress=False)
    assert results["stop_reason"] == ["time_limit", "time_limit"]
    assert results["epochs_run"] == 2


def test_batch_rows_cover_every_row_once_in_both_modes():
    lengths = torch.randint(1, 51, (1000,))
    for by_length in (False, True):
        gen = torch.Generator().manual_seed(3)
        batches = batch_rows(1000, 64, gen, lengths=lengths if by_length else None, pool=4)
        rows = torch.cat(batches)
        assert sorted(rows.tolist()) == list(range(1000))
        assert all(len(b) <= 64 for b in batches)


def test_random_batches_are_the_seeded_permutation():
    batches = batch_rows(100, 30, torch.Generator().manual_seed(5))
    expected = torch.randperm(100, generator=torch.Generator().manual_seed(5)).split(30)
    assert all(torch.equal(a, b) for a, b in zip(batches, expected, strict=True))


def test_batches_by_length_hold_similar_lengths_and_need_less_padding():
    lengths = torch.randint(1, 51, (6400,))
    padded = {}
    for by_length in (False, True):
        gen = torch.Generator().manual_seed(1)
        batches = batch_rows(6400, 64, gen, lengths=lengths if by_length else None, pool=20)
        padded[by_length] = sum(int(lengths[b].max()) * len(b) for b in batches)
    # Random batches of 64 almost always hold a row of length ~50; sorted pools of 1280 rows
    # give batches whose width is close to their rows' own lengths.
    assert padded[True] < 0.65 * padded[False]
    assert padded[True] >= int(lengths.sum())


def test_eval_batch_size_defaults_by_device_and_is_validated():
    from adarec.setup import eval_batch_size

    t = load_config("default").runtime
    assert eval_batch_size(t, CPU) == 512 and eval_batch_size(t, CUDA) == 2048
    t = load_config("default", overrides=["runtime.eval_batch_size=100"]).runtime
    assert eval_batch_size(t, CUDA) == 100
    with pytest.raises(AdarecError, match="eval_batch_size"):
        load_config("default", overrides=["runtime.eval_batch_size=0"])
