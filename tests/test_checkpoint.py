"""Self-describing checkpoints: save, load with weights_only, rebuild, and refuse bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import adarec.checkpoint as ckpt
from adarec.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from adarec.config import load_config
from adarec.data.load import DataInfo
from adarec.errors import AdarecError
from adarec.model.build import build_model

N_ITEMS, MAX_LEN = 40, 12


@pytest.fixture(scope="module")
def config():
    return load_config(
        overrides=["model.hidden_size=16", "model.num_layers=1", "data.max_len=12",
                   "train.seed=3"]
    )


@pytest.fixture(scope="module")
def info() -> DataInfo:
    return DataInfo(n_users=9, n_items=N_ITEMS, n_interactions=77, max_len=MAX_LEN,
                    source="test")


@pytest.fixture()
def saved(tmp_path: Path, config, info):
    """A freshly built (untrained) model and the path of its checkpoint."""
    torch.manual_seed(0)
    model = build_model(config, n_items=N_ITEMS, max_len=MAX_LEN).eval()
    path = tmp_path / "best.pt"
    save_checkpoint(path, model=model, config=config, info=info, epoch=4,
                    metrics={"all": {"NDCG@20": 0.25, "users": 9}})
    return model, path


def test_round_trip_gives_identical_scores(saved, config, info):
    model, path = saved
    state = load_checkpoint(path)
    assert state["epoch"] == 4
    assert state["metrics"] == {"all": {"NDCG@20": 0.25, "users": 9}}
    assert set(state["versions"]) >= {"adarec", "torch"}
    rebuilt, cfg, got_info = model_from_checkpoint(state)
    assert cfg == config
    assert got_info == info
    x = torch.tensor([[0, 0, 3, 7, 1], [5, 6, 7, 8, 9]])
    with torch.no_grad():
        assert torch.equal(rebuilt.eval().score(x), model.score(x))
    for name, tensor in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[name], tensor), name


def test_checkpoint_loads_with_weights_only(saved):
    _, path = saved
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert state["format"] == ckpt.FORMAT
    assert all(isinstance(v, torch.Tensor) for v in state["state_dict"].values())


def test_save_leaves_no_temporary_file_and_replaces_an_old_checkpoint(saved, config, info):
    model, path = saved
    with torch.no_grad():
        model.embedding.items.weight.add_(1.0)
    save_checkpoint(path, model=model, config=config, info=info, epoch=9, metrics={})
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.pt"]
    state = load_checkpoint(path)
    assert state["epoch"] == 9
    assert torch.equal(state["state_dict"]["embedding.items.weight"],
                       model.embedding.items.weight)


def test_a_failed_save_keeps_the_previous_checkpoint(saved, config, info, monkeypatch):
    model, path = saved

    def full_disk(fd):  # the temporary file holds half a checkpoint when the disk fills
        raise OSError(28, "disk full")

    monkeypatch.setattr(ckpt.os, "fsync", full_disk)
    with pytest.raises(ckpt.CheckpointWriteError, match="disk full"):
        save_checkpoint(path, model=model, config=config, info=info, epoch=5, metrics={})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 4


def test_a_failed_save_leaves_no_temporary_file(saved, config, info, monkeypatch):
    model, path = saved

    def full_disk(fd):
        raise OSError(28, "disk full")

    monkeypatch.setattr(ckpt.os, "fsync", full_disk)
    with pytest.raises(ckpt.CheckpointWriteError):
        save_checkpoint(path, model=model, config=config, info=info, epoch=5, metrics={})
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.pt"]


def test_truncated_file_is_refused(saved):
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AdarecError, match="not a readable adarec checkpoint"):
        load_checkpoint(path)


def test_garbage_file_is_refused(tmp_path: Path):
    path = tmp_path / "best.pt"
    path.write_bytes(b"this is not a checkpoint\x00\x01\x02")
    with pytest.raises(AdarecError, match="best.pt"):
        load_checkpoint(path)


def test_foreign_torch_file_is_refused(tmp_path: Path):
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(AdarecError, match="not an adarec checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("name", ["missing.pt", "no/such/dir/best.pt"])
def test_missing_path_is_refused(tmp_path: Path, name: str):
    with pytest.raises(AdarecError, match="no checkpoint at"):
        load_checkpoint(tmp_path / name)


def test_a_directory_is_not_a_checkpoint(tmp_path: Path):
    with pytest.raises(AdarecError, match="no checkpoint at"):
        load_checkpoint(tmp_path)


def test_weights_that_do_not_fit_the_model_are_an_adarec_error(saved):
    _, path = saved
    state = load_checkpoint(path)
    del state["state_dict"]["embedding.items.weight"]
    with pytest.raises(AdarecError, match="weights do not fit the model"):
        model_from_checkpoint(state)
