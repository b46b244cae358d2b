"""The GPU path: bf16 training against fp32, no host-device sync per step, evaluation that
matches the CPU and repeats exactly, a whole `fit`. Skipped where PyTorch sees no CUDA
device (CI); `benchmarks/gpu_check.sh` runs it on a GPU machine."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from adarec.config import load_config
from adarec.evaluate import evaluate
from adarec.model.build import build_model
from adarec.setup import make_optimizer, prepare_data, seed_everything, set_matmul_precision
from adarec.train import fit, train_epoch

# ADAREC_TEST_GPU=cpu dry-runs this file on the CPU (the sync check needs CUDA).
CUDA = torch.device(os.environ.get("ADAREC_TEST_GPU", "cuda"))
pytestmark = pytest.mark.skipif(CUDA.type == "cuda" and not torch.cuda.is_available(),
                                reason="needs a CUDA device")
SMALL = ["data.dataset=synthetic", "data.synthetic_users=2000", "data.synthetic_items=300",
         "model.hidden_size=32", "intents.n_intents=16", "adarec.max_depth=4",
         "train.batch_size=64"]
PRESETS = ["default", "elcrec-beauty", "adarec-beauty", "release-beauty"]


def _model(preset: str, device: torch.device = CUDA):
    config = load_config(preset, overrides=SMALL)
    seed_everything(1)
    splits, info = prepare_data(config)
    model = build_model(config, n_items=info.n_items, max_len=info.max_len).to(device)
    member = next(iter(getattr(model, "members", [model])))
    member.before_training(splits.train.inputs.to(device), 1)
    return config, splits, info, model, member


def _epoch(preset: str, autocast):
    config, splits, info, model, member = _model(preset)
    train = splits.train.to(CUDA)
    opt = make_optimizer(member, config.train, CUDA)
    gen = torch.Generator(device=CUDA).manual_seed(1)
    return train_epoch(member, opt, train, batch_size=64, generator=gen, autocast=autocast)


@pytest.mark.parametrize("preset", PRESETS)
def test_bf16_epoch_is_close_to_fp32(preset):
    set_matmul_precision("fp32")
    fp32 = _epoch(preset, None)
    set_matmul_precision("auto")
    bf16 = _epoch(preset, torch.bfloat16)
    for name in ("total", "rec"):
        assert torch.isfinite(torch.tensor(bf16[name]))
        assert bf16[name] == pytest.approx(fp32[name], rel=0.05), name
    assert bf16["rec"] != fp32["rec"]  # bf16 was in effect


@pytest.mark.parametrize("preset", PRESETS)
def test_no_host_device_sync_per_step(preset):
    """The hot loop may wait for the device at the end of the epoch, not at each step."""
    if CUDA.type != "cuda":
        pytest.skip("sync debug mode needs CUDA")
    config, splits, info, model, member = _model(preset)
    train = splits.train.to(CUDA)
    steps = -(-len(train) // 64)
    opt = make_optimizer(member, config.train, CUDA)
    gen = torch.Generator(device=CUDA).manual_seed(1)
    train_epoch(member, opt, train, batch_size=64, generator=gen, autocast=torch.bfloat16)
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            parts = train_epoch(member, opt, train, batch_size=64, generator=gen,
                                autocast=torch.bfloat16)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    print(f"{preset}: {syncs} syncs over {steps} steps ({len(parts)} logged values)")
    assert syncs <= len(parts) + 2, f"{syncs} syncs in {steps} steps"


@pytest.mark.parametrize("preset", ["adarec-beauty", "release-beauty"])
def test_gpu_evaluation_matches_cpu_and_repeats(preset):
    set_matmul_precision("fp32")
    config, splits, info, model, _ = _model(preset)
    model.eval()
    valid = splits.valid
    on_gpu = evaluate(model.score, valid.to(CUDA), info.n_items)
    again = evaluate(model.score, valid.to(CUDA), info.n_items)
    assert on_gpu == again
    model.to("cpu")
    on_cpu = evaluate(model.score, valid, info.n_items)
    for name, value in on_cpu["all"].items():
        assert on_gpu["all"][name] == pytest.approx(value, abs=2e-3), name
    set_matmul_precision("auto")


def test_fit_on_gpu(tmp_path):
    config = load_config("adarec-beauty", overrides=[
        *SMALL, "train.max_epochs=2", f"runtime.device={CUDA.type}", f"output_dir={tmp_path}"])
    run_dir, results = fit(config, progress=False)
    assert CUDA.type != "cuda" or results["peak_gpu_memory_mib"] > 0
    if CUDA.type == "cuda":
        assert results["device"] == torch.cuda.get_device_name(CUDA)
    assert (run_dir / "best.pt").is_file()
